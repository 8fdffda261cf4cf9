"""Errors answered in the shape of the API that was called, never as a traceback.

OpenAI's routes (``/v1/...``) answer ``{"error": {"message", "type", "param", "code"}}``;
text-embeddings-inference's answer ``{"error", "error_type"}``. Messages say what was wrong and
what to send instead, and never hold a file path or an exception's text (those go to the log)::

    >>> error_body("/embed", ApiError(413, "too big", code="max_chars_exceeded"))
    {'error': 'too big', 'error_type': 'Validation'}
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedtune.serve.batcher import ShuttingDown
from embedtune.serve.metrics import ServeMetrics

__all__ = [
    "ApiError",
    "AnswerUnexpected",
    "error_body",
    "error_response",
    "add_error_handlers",
    "validation_message",
]

log = logging.getLogger("embedtune.serve")

_OPENAI_TYPES = {
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}
_TEI_TYPES = {
    401: "Unauthorized",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "Validation",
    422: "Validation",
    429: "Overloaded",
    500: "Backend",
    503: "Unhealthy",
}


class ApiError(Exception):
    """An error answered with ``status`` and a JSON body in the called API's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        tei_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.tei_type = tei_type
        self.headers = headers


class _AsciiJSON(JSONResponse):
    """JSON with every non-ASCII character escaped, so any string at all can be rendered."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _is_openai(path: str) -> bool:
    return path.startswith("/v1/") or path == "/v1"


def error_body(path: str, err: ApiError) -> dict[str, Any]:
    """The JSON body of ``err`` for a request to ``path``."""
    if _is_openai(path):
        kind = _OPENAI_TYPES.get(err.status, "invalid_request_error")
        return {
            "error": {"message": err.message, "type": kind, "param": err.param, "code": err.code}
        }
    return {
        "error": err.message,
        "error_type": err.tei_type or _TEI_TYPES.get(err.status, "Validation"),
    }


def error_response(path: str, err: ApiError, metrics: ServeMetrics | None) -> JSONResponse:
    """``err`` as a response to ``path``, counted in ``metrics``."""
    body = error_body(path, err)
    if metrics is not None:
        kind = body["error"]["type"] if _is_openai(path) else body["error_type"]
        metrics.observe_error(path, err.code or kind)
    headers = dict(err.headers or {})
    if err.status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return _AsciiJSON(body, status_code=err.status, headers=headers or None)


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """One sentence for pydantic's errors, and the field to blame."""
    parts, param = [], None
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        if e.get("type") == "json_invalid":
            ctx = e.get("ctx") or {}
            return (
                "the request body is not valid JSON"
                + (f" ({ctx['error']})" if ctx.get("error") else "")
                + "; send a JSON object with Content-Type: application/json",
                None,
            )
        if e.get("type") == "missing" and not loc:
            return "the request body is missing; send a JSON object", None
        if e.get("type") in ("model_attributes_type", "dict_type") and not loc:
            return (
                "the request body must be a JSON object, sent with Content-Type: application/json",
                None,
            )
        field = ".".join(loc) or "body"
        param = param or field
        parts.append(f"'{field}': {e.get('msg', 'invalid value')}")
    return "invalid request: " + "; ".join(parts), param


def add_error_handlers(app: FastAPI, *, max_body_bytes: int) -> None:
    """Answer every failure inside a route in the called API's shape."""

    def respond(request: Request, err: ApiError) -> JSONResponse:
        return error_response(request.url.path, err, getattr(request.app.state, "metrics", None))

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return respond(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(exc)
        return respond(request, ApiError(422, message, param=param, code="invalid_request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        code = None
        if exc.status_code == 404:
            detail = f"no route {request.method} {request.url.path}; see /docs for the routes"
        elif exc.status_code == 413:
            detail = (
                f"the request body is larger than max_body_bytes={max_body_bytes}; send fewer or "
                "shorter texts per request, or raise serve.max_body_bytes"
            )
            code = "max_body_bytes_exceeded"
        return respond(request, ApiError(exc.status_code, detail, code=code))

    @app.exception_handler(ShuttingDown)
    async def _closing(request: Request, exc: ShuttingDown) -> JSONResponse:
        err = ApiError(503, "the server is shutting down; retry on another replica or later")
        return respond(request, err)


class AnswerUnexpected:
    """ASGI middleware: any other exception becomes a 500 in the API's shape, and is logged.

    Innermost of the app's middleware. Starlette's own last resort re-raises after answering,
    and uvicorn then drops the keep-alive connection; this answers and keeps it.
    """

    def __init__(self, app: ASGIApp, metrics: ServeMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_started(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_started)
        except Exception as exc:
            if started:
                raise
            # The exception's text may hold paths or inputs: it goes to the log, not the caller.
            log.exception("error while serving %s %s", scope.get("method"), scope["path"])
            err = ApiError(
                500,
                f"internal error ({type(exc).__name__}); the server's log has the details",
                code="internal_error",
                tei_type="Backend",
            )
            await error_response(scope["path"], err, self.metrics)(scope, receive, send)
