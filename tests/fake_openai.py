"""A real HTTP server on 127.0.0.1 that speaks OpenAI's chat completions protocol, for tests.

It stands in for a paid remote service only; everything else in the tests runs for real. Each
test scripts what the next requests get (429 with Retry-After, 500, a dropped connection, a
malformed body, a given reply text) and reads back what the server saw::

    with FakeOpenAI(latency=0.05) as server:
        server.script = [("status", 429, {"Retry-After": "0.2"})]
        ...  # point generate.base_url at server.url
        assert server.calls_total == 2

Unscripted requests get a JSON reply with questions built from words of the passage in the
prompt (so round-trip filtering can keep them), as many as the prompt asks for.

``unsupported=("max_tokens", "temperature", "top_p")`` makes it answer as OpenAI answers a
reasoning model (o3, gpt-5) sent those parameters: a 400 with OpenAI's own error body, one
parameter at a time (see ``OPENAI_UNSUPPORTED``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Action = tuple[Any, ...]

#: OpenAI's 400 bodies for parameters a reasoning model refuses, as its API sends them
#: ("error": message, type, param, code); temperature and top_p are refused unless 1.
OPENAI_UNSUPPORTED = {
    "max_tokens": (
        "unsupported_parameter",
        "Unsupported parameter: 'max_tokens' is not supported with this model. "
        "Use 'max_completion_tokens' instead.",
    ),
    "temperature": (
        "unsupported_value",
        "Unsupported value: 'temperature' does not support {value} with this model. "
        "Only the default (1) value is supported.",
    ),
    "top_p": (
        "unsupported_parameter",
        "Unsupported parameter: 'top_p' is not supported with this model.",
    ),
    "seed": (
        "unsupported_parameter",
        "Unsupported parameter: 'seed' is not supported with this model.",
    ),
}


def _passage(prompt: str) -> str:
    m = re.search(r'"""\s*(.*?)\s*"""', prompt, re.S)
    if m:
        return m.group(1)
    parts = prompt.rsplit("Text:", 1)
    return parts[-1].split("Question:", 1)[0].strip()


def default_questions(prompt: str) -> list[str]:
    """Questions made of the passage's own words: distinct per passage, answerable by it."""
    m = re.search(r"write (\d+) different", prompt)
    n = int(m.group(1)) if m else 1
    words = re.findall(r"[A-Za-z][A-Za-z0-9_.()]+", _passage(prompt))
    out = []
    for i in range(n):
        span = words[i * 3 : i * 3 + 5] or words[:5] or ["nothing"]
        if i % 2 == 0:
            out.append(f"What is meant by {' '.join(span)}?")
        else:
            out.append(f"How does {' '.join(span)} work")
    return out


def json_reply(prompt: str) -> str:
    return json.dumps({"questions": default_questions(prompt)})


class FakeOpenAI:
    """See the module docstring. ``reply(prompt) -> str`` sets unscripted reply texts."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        api_key: str | None = None,
        reject_response_format: bool = False,
        models: tuple[str, ...] | None = None,
        reply: Callable[[str], str] = json_reply,
        unsupported: tuple[str, ...] = (),
    ) -> None:
        self.latency = latency
        self.api_key = api_key
        self.reject_response_format = reject_response_format
        self.models = models
        self.reply = reply
        self.unsupported = unsupported
        self.script: list[Action] = []
        self.calls: Counter[str] = Counter()  # prompt text -> requests received
        self.delivered: Counter[str] = Counter()  # prompt text -> successful replies sent
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def calls_total(self) -> int:
        return sum(self.calls.values())

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without TCP_NODELAY the second waits
            # ~40 ms for a delayed ACK, a stall real servers (uvicorn, vLLM) do not have.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                fake._handle(self)

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default 5 refuses bursts of concurrent clients

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # shutdown() waits for the loop's next poll: 0.05 s, not the default 0.5 s, per server
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ serving
    def _send(
        self, h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()

    def _error(self, h: BaseHTTPRequestHandler, status: int, message: str, headers=None) -> None:
        body = json.dumps({"error": {"message": message, "type": "fake", "code": status}})
        self._send(h, status, body.encode(), headers)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length)
        try:
            req = json.loads(raw)
        except json.JSONDecodeError:
            self._error(h, 400, "request body is not JSON")
            return
        prompt = "".join(m.get("content") or "" for m in req.get("messages", []))
        with self.lock:
            self.calls[prompt] += 1
            self.requests.append(
                {
                    "time": time.monotonic(),
                    "body": req,
                    "authorization": h.headers.get("Authorization", ""),
                    "prompt": prompt,
                }
            )
            action = self.script.pop(0) if self.script else None
        if self.latency:
            time.sleep(self.latency)
        if not h.path.rstrip("/").endswith("/chat/completions"):
            self._error(h, 404, f"unknown path {h.path}")
            return
        if self.api_key is not None and h.headers.get("Authorization") != f"Bearer {self.api_key}":
            self._error(h, 401, "Incorrect API key provided")
            return
        if self.models is not None and req.get("model") not in self.models:
            self._error(h, 404, f"The model `{req.get('model')}` does not exist")
            return
        for param in self.unsupported:
            if param in req and not (param in ("temperature", "top_p") and req[param] == 1):
                code, message = OPENAI_UNSUPPORTED[param]
                error = {
                    "message": message.format(value=req[param]),
                    "type": "invalid_request_error",
                    "param": param,
                    "code": code,
                }
                self._send(h, 400, json.dumps({"error": error}).encode(), None)
                return
        if self.reject_response_format and "response_format" in req:
            self._error(h, 400, "response_format is not supported by this server")
            return
        content: str | None = None
        finish_reason = "stop"
        if action is not None:
            kind = action[0]
            if kind == "status":
                self._error(
                    h, action[1], f"scripted {action[1]}", action[2] if len(action) > 2 else None
                )
                return
            if kind == "drop":  # close the socket without a reply
                h.close_connection = True
                return
            if kind == "malformed":
                self._send(h, 200, b'{"id": "x", "choices": [', None)
                return
            if kind == "text":
                content = action[1]
            if kind == "cut":  # the token limit ran out before any text (a reasoning model's)
                content, finish_reason = "", "length"
            # ("ok",): the default reply, to let some requests through before a scripted failure
        if content is None:
            content = self.reply(prompt)
        body = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": len(prompt) // 4,
                "completion_tokens": len(content) // 4,
                "total_tokens": (len(prompt) + len(content)) // 4,
            },
        }
        self._send(h, 200, json.dumps(body).encode(), None)
        with self.lock:
            self.delivered[prompt] += 1
