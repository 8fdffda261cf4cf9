"""ASGI middleware that answers before a request's body is read: metrics, the key, admission.

FastAPI reads and parses a body before any dependency of the route runs, so a check made there
comes too late: an unauthenticated caller could make the server buffer 100 MB, and an overloaded
server would parse what it is about to refuse. These run on the headers alone, in this order::

    Instrument -> RequireApiKey -> Admission -> LimitBody -> (FastAPI: routes)

Each is plain ASGI (not ``BaseHTTPMiddleware``) and usable alone.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedtune.serve.errors import ApiError, error_response
from embedtune.serve.metrics import ServeMetrics

__all__ = [
    "Instrument",
    "RequireApiKey",
    "Admission",
    "LimitBody",
    "EMBED_ROUTES",
    "OPEN_ROUTES",
]

EMBED_ROUTES = frozenset({"/v1/embeddings", "/embed"})
"""Routes that run the model, and so are admitted by :class:`Admission`."""

OPEN_ROUTES = frozenset({"/health"})
"""Routes that never need the key: load balancers probe them without one."""

# Status recorded for a request whose client went away before any response (nginx's 499).
CLIENT_CLOSED = 499


class Instrument:
    """Count every request by route and status, refusals and disconnects included."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: int | None = None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException:
            status = status or 500
            raise
        finally:
            seconds = time.perf_counter() - start
            self.metrics.observe_request(scope["path"], status or CLIENT_CLOSED, seconds)


class RequireApiKey:
    """401 for any route but ``/health`` without ``Authorization: Bearer KEY``; body unread."""

    def __init__(
        self, app: ASGIApp, api_key: str, key_env: str, metrics: ServeMetrics | None = None
    ) -> None:
        self.app = app
        self.key = api_key.encode()
        self.key_env = key_env
        self.metrics = metrics

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                return scheme.lower() == b"bearer" and secrets.compare_digest(
                    given.strip(), self.key
                )
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_ROUTES or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        err = ApiError(
            401,
            "missing or wrong API key: send the header 'Authorization: Bearer <key>' with the "
            f"key the server was started with (${self.key_env} or --api-key)",
            code="invalid_api_key",
            tei_type="Unauthorized",
        )
        await error_response(scope["path"], err, self.metrics)(scope, receive, send)


class Admission:
    """429 with Retry-After, before the body is read, when the server has enough work.

    Two limits, checked on each embedding request as it comes:

    - ``max_requests`` in progress at once, as text-embeddings-inference's
      ``--max-concurrent-requests`` (default 512): bounds memory and connections;
    - ``max_wait_s``: with fair turns a newcomer waits about one text's time for each request
      in progress, so it is refused once ``in progress / texts_per_s()`` passes this. How many
      texts a CPU gets through varies tenfold with their length and the machine's other load,
      which a count cannot follow.

    A refusal costs the server microseconds, so it stays quick however deep the overload.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_requests: int,
        max_wait_s: float = math.inf,
        texts_per_s: Callable[[], float | None] = lambda: None,
        metrics: ServeMetrics | None = None,
    ) -> None:
        self.app = app
        self.max_requests = max_requests
        self.max_wait_s = max_wait_s
        self.texts_per_s = texts_per_s
        self.metrics = metrics
        self.running = 0

    def refusal(self) -> ApiError | None:
        rate = self.texts_per_s()
        wait = self.running / rate if rate else 0.0
        if self.running >= self.max_requests:
            why = f"{self.running} requests are in progress (max_concurrent_requests={self.max_requests})"
        elif wait > self.max_wait_s:
            why = (
                f"{self.running} requests are in progress, about {wait:.0f} s of turns at "
                f"{rate:.1f} texts/s (max_queue_seconds={self.max_wait_s:g})"
            )
        else:
            return None
        retry = int(min(60, max(1, math.ceil(wait))))
        return ApiError(
            429,
            f"the server is busy: {why}; retry after {retry} s",
            code="overloaded",
            headers={"Retry-After": str(retry)},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in EMBED_ROUTES:
            await self.app(scope, receive, send)
            return
        err = self.refusal()
        if err is not None:
            await error_response(scope["path"], err, self.metrics)(scope, receive, send)
            return
        self.running += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.running -= 1


class LimitBody:
    """413 for a body over ``limit`` bytes, before it is parsed.

    A declared ``Content-Length`` over the limit is refused here, unread. A chunked body has no
    length to check: Starlette's ``RequestBodyLimitMiddleware`` counts its bytes as the route reads
    them and stops at the limit (the route's error handler words the 413). It is not used for
    both because it answers a declared length in plain text, not in the API's error shape.
    """

    def __init__(self, app: ASGIApp, limit: int, metrics: ServeMetrics | None = None) -> None:
        self.app = RequestBodyLimitMiddleware(app, max_body_size=limit)
        self.limit = limit
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            err = ApiError(
                413,
                f"the request body has {int(declared)} bytes, more than max_body_bytes="
                f"{self.limit}; send fewer or shorter texts per request, or raise "
                "serve.max_body_bytes",
                code="max_body_bytes_exceeded",
            )
            await error_response(scope["path"], err, self.metrics)(scope, receive, send)
            return
        await self.app(scope, receive, send)
