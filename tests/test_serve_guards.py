"""What the server answers before it reads a body, and what it stops doing when a client goes.

Requests are sent as raw ASGI calls, so a test can see whether the app ever asked for the body
(``receive``) and can hang up mid-request, which a test client cannot do.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from embedtune.serve import create_app
from embedtune.serve.guards import Admission, LimitBody, RequireApiKey
from embedtune.serve.settings import ServeSettings


class Call:
    """One ASGI request: its body in ``chunks``, then silence until ``hang_up`` is set."""

    def __init__(self, method: str, path: str, headers: dict[str, str], chunks: list[bytes]):
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
            ],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "state": {},
        }
        self.chunks = list(chunks)
        self.reads = 0
        self.hang_up = asyncio.Event()
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = b""

    async def receive(self) -> dict:
        if self.chunks:
            self.reads += 1
            chunk = self.chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}
        await self.hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")

    async def __call__(self, app) -> Call:
        await app(self.scope, self.receive, self.send)
        return self

    def json(self):
        return json.loads(self.body)


def post(path: str, body: dict | bytes, headers: dict[str, str] | None = None, **kw) -> Call:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {
        "content-type": "application/json",
        "content-length": str(len(raw)),
        **(headers or {}),
    }
    return Call("POST", path, headers, [raw], **kw)


async def _never_called(scope, receive, send):
    raise AssertionError("the guard let the request through")


# ------------------------------------------------------------------------- each guard alone
def test_require_api_key_answers_401_without_reading_the_body():
    guard = RequireApiKey(_never_called, api_key="k", key_env="EMBEDTUNE_API_KEY")
    huge = {"content-length": str(100 * 2**20), "authorization": "Bearer wrong"}
    for path, headers in [
        ("/v1/embeddings", huge),
        ("/embed", {}),
        ("/docs", {}),
        ("/openapi.json", {"authorization": "Basic k"}),
        ("/redoc", {"authorization": "Bearer k "[:-1] + "x"}),
    ]:
        call = asyncio.run(post(path, b"{}", headers)(guard))
        assert call.status == 401, path
        assert call.reads == 0, f"{path}: the body was read before the key was checked"
        assert call.headers["www-authenticate"] == "Bearer"
        assert "EMBEDTUNE_API_KEY" in call.body.decode()


def test_limit_body_refuses_a_declared_length_unread_and_counts_a_chunked_one():
    async def echo_length(scope, receive, send):
        from starlette.requests import Request

        body = await Request(scope, receive).body()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})

    guard = LimitBody(echo_length, limit=100)
    declared = asyncio.run(post("/embed", b"x" * 101)(guard))
    assert declared.status == 413 and declared.reads == 0
    assert "max_body_bytes=100" in declared.json()["error"]

    fits = asyncio.run(post("/embed", b"x" * 100)(guard))
    assert (fits.status, fits.body) == (200, b"100")

    # Chunked: no length to check up front; the limit stops the read at the chunk that crosses
    # it, long before all 1,000 chunks. (In the app the route words this 413 in the API's shape.)
    chunked = Call("POST", "/embed", {"transfer-encoding": "chunked"}, [b"x" * 30] * 1000)
    asyncio.run(chunked(guard))
    assert chunked.status == 413 and chunked.reads == 4


def test_admission_refuses_quickly_past_either_limit_and_lets_others_through():
    release = asyncio.Event()

    async def slow(scope, receive, send):
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    rate: list[float | None] = [None]  # texts/s: unknown until the model has run
    guard = Admission(slow, max_requests=4, max_wait_s=1.0, texts_per_s=lambda: rate[0])

    async def main():
        running = [asyncio.create_task(post("/embed", {"inputs": "x"})(guard)) for _ in range(3)]
        await asyncio.sleep(0.01)
        rate[0] = 2.0  # three in progress at 2 texts/s: a newcomer would wait ~1.5 s > 1 s
        start = time.perf_counter()
        too_slow = await post("/v1/embeddings", {"input": "x"})(guard)
        refused_s = time.perf_counter() - start
        rate[0] = 100.0  # fast enough: only the count limit is left
        running.append(asyncio.create_task(post("/embed", {"inputs": "x"})(guard)))
        await asyncio.sleep(0.01)
        too_many = await post("/embed", {"inputs": "x"})(guard)
        health = asyncio.create_task(Call("GET", "/health", {}, [b""])(guard))
        await asyncio.sleep(0.01)
        assert not health.done()  # /health is never refused (it waits on `slow` like the rest)
        release.set()
        return too_slow, refused_s, too_many, await asyncio.gather(*running, health)

    too_slow, refused_s, too_many, done = asyncio.run(main())
    assert too_slow.status == 429 and too_slow.reads == 0
    assert too_slow.headers["retry-after"] == "2"
    assert "max_queue_seconds=1" in too_slow.json()["error"]["message"]
    assert refused_s < 0.1
    assert too_many.status == 429 and too_many.reads == 0
    assert "max_concurrent_requests=4" in too_many.json()["error"]
    assert [c.status for c in done] == [200] * 5
    assert guard.running == 0


# ------------------------------------------------------------------------- through the app
@pytest.fixture()
def app(_minilm_session):
    # A queue of 1 ms: once the model's speed is known, one request in progress is enough.
    settings = ServeSettings(max_batch_size=4, max_batch_tokens=4 * 256, max_queue_seconds=0.001)
    return create_app(_minilm_session, settings, model_name="m")


def _texts(n: int, words: int = 150) -> list[str]:
    return [f"text {i}: " + "packages and data frames in R " * (words // 6) for i in range(n)]


async def _until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_a_client_that_hangs_up_has_its_texts_dropped(app):
    batcher = app.state.batcher

    async def main():
        big = post("/embed", {"inputs": _texts(64, words=30)})
        task = asyncio.create_task(big(app))
        await _until(lambda: batcher.batches >= 1)
        big.hang_up.set()
        await asyncio.wait_for(task, 30)
        computed = batcher.batches
        await _until(lambda: batcher.waiting == 0, 5)
        await asyncio.sleep(0.3)
        assert batcher.batches <= computed + 1  # at most the batch in flight finishes
        ok = await post("/embed", {"inputs": "still serving"})(app)
        await app.state.service.close()
        return big, ok

    big, ok = asyncio.run(main())
    assert big.status in (None, 499)  # nothing useful can be sent to a client that has gone
    assert app.state.batcher.batches < 16, "the 64 texts were computed for nobody"
    assert ok.status == 200


def test_a_full_queue_gets_429_with_retry_after_in_the_api_shape(app):
    async def main():
        first = await post("/embed", {"inputs": "the model's speed is now known"})(app)
        big = asyncio.create_task(post("/embed", {"inputs": _texts(20, words=12)})(app))
        await _until(lambda: app.state.batcher.waiting > 0)
        start = time.perf_counter()
        openai = await post("/v1/embeddings", {"input": "one more"})(app)
        tei = await post("/embed", {"inputs": "one more"})(app)
        refused_s = (time.perf_counter() - start) / 2
        big = await big
        await app.state.service.close()
        return first, openai, tei, refused_s, big

    first, openai, tei, refused_s, big = asyncio.run(main())
    assert first.status == 200
    assert (openai.status, tei.status) == (429, 429)
    assert int(openai.headers["retry-after"]) >= 1
    assert openai.json()["error"]["code"] == "overloaded"
    assert "max_queue_seconds=0.001" in openai.json()["error"]["message"]
    assert tei.json()["error_type"] == "Overloaded"
    assert refused_s < 1.0  # no model work, no waiting (the benchmark measures the 100 ms aim)
    assert big.status == 200 and len(big.json()) == 20  # what was taken is still served
