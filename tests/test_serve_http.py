"""The server under uvicorn on 127.0.0.1, spoken to over raw sockets: connections, timing, hang-ups.

These are the failures a test client cannot show: a connection dropped after an error, a server
that waits for a body before refusing it, a small request stuck behind a big one, and work that
goes on after its client has gone.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import uvicorn

from embedtune.serve import create_app
from embedtune.serve.settings import ServeSettings

KEY = "k3y"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(_minilm_session):
    port = _free_port()
    settings = ServeSettings(port=port, max_batch_size=8, max_batch_tokens=8 * 64)
    app = create_app(_minilm_session, settings, model_name="minilm", api_key=KEY)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield app, port
    srv.should_exit = True
    thread.join(timeout=10)


def _request(path: str, body: dict | None = None, *, key: str | None = KEY, length=None) -> bytes:
    raw = b"" if body is None else json.dumps(body, ensure_ascii=True).encode()
    lines = [f"POST {path} HTTP/1.1", "Host: t", "Content-Type: application/json"]
    lines.append(f"Content-Length: {len(raw) if length is None else length}")
    if key is not None:
        lines.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + raw


def _response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    while len(rest) < int(headers["content-length"]):
        rest += sock.recv(65536)
    return int(status_line.split()[1]), headers, rest


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def test_a_lone_surrogate_gets_422_and_the_connection_stays_open(server):
    _, port = server
    with _connect(port) as sock:
        for route, field in (("/v1/embeddings", "input"), ("/embed", "inputs")):
            sock.sendall(_request(route, {field: "\ud800"}))
            status, _, body = _response(sock)
            assert status == 422 and b"lone surrogate" in body
            # The same connection serves the next request: it was not dropped.
            sock.sendall(_request(route, {field: "What is R?"}))
            status, _, _ = _response(sock)
            assert status == 200


def test_no_key_gets_401_without_the_server_waiting_for_the_body(server):
    _, port = server
    with _connect(port) as sock:
        sock.settimeout(10)
        # 100 MB announced, not one byte sent: a server that read the body first would hang here.
        sock.sendall(_request("/v1/embeddings", None, key=None, length=100 * 2**20))
        start = time.perf_counter()
        status, headers, body = _response(sock)
        assert status == 401 and headers["www-authenticate"] == "Bearer"
        assert time.perf_counter() - start < 5


def test_a_small_request_is_not_stuck_behind_a_big_one_whose_client_then_hangs_up(server):
    app, port = server
    batcher = app.state.batcher
    batches_before = batcher.batches
    big_texts = [f"passage {i}: " + "install packages from CRAN with R " * 12 for i in range(400)]
    with _connect(port) as big:
        big.sendall(_request("/embed", {"inputs": big_texts, "truncate": True}))
        deadline = time.monotonic() + 60
        while batcher.batches == batches_before:  # the big request is being embedded
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with _connect(port) as small:
            start = time.perf_counter()
            small.sendall(_request("/v1/embeddings", {"input": "What is R?"}))
            status, _, _ = _response(small)
            small_s = time.perf_counter() - start
            small_after = batcher.batches - batches_before
        assert status == 200
        # 400 texts take 50 batches of 8; the small one rode in the next one or two.
        assert small_after <= 4, f"the small request waited for {small_after} batches"
        big.close()  # the big request's client gives up

    deadline = time.monotonic() + 10
    while batcher.waiting:
        assert time.monotonic() < deadline, "the hung-up request's texts stayed queued"
        time.sleep(0.01)
    time.sleep(0.2)
    assert batcher.batches - batches_before < 25, (
        "the texts of a client that had gone were embedded"
    )
    assert small_s < 30
