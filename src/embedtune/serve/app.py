"""The embeddings HTTP service: OpenAI's and text-embeddings-inference's APIs over one model.

Routes:

- ``POST /v1/embeddings``: OpenAI's shape, so the ``openai`` client (and anything built on it)
  works with ``base_url="http://HOST:PORT/v1"``. Inputs longer than the model's
  ``max_seq_length`` are truncated, as ``model.encode`` does; embeddings are unit length.
- ``POST /embed``: text-embeddings-inference's shape; too-long inputs get 413 unless
  ``"truncate": true``.
- ``GET /v1/models``, ``GET /health``, ``GET /info``, ``GET /metrics`` (Prometheus text).

Concurrent requests share model calls (see :mod:`embedtune.serve.batcher`). With an API key set
(``--api-key`` or the environment variable named by ``serve.api_key_env``) every route but
``/health`` needs ``Authorization: Bearer KEY``. Errors never surface as a bare 500: bad input gets
401/413/422 with a JSON body in the shape of the API that was called::

    >>> from fastapi.testclient import TestClient
    >>> app = create_app(load_model("all-MiniLM-L6-v2"), ServeConfig(), model_name="minilm")
    >>> with TestClient(app) as client:                               # doctest: +SKIP
    ...     client.post("/embed", json={"inputs": "What is R?"}).json()[0][:3]
    [-0.0283, 0.0172, -0.0515]
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedtune.config import ServeConfig
from embedtune.serve.batcher import Batcher
from embedtune.serve.metrics import CONTENT_TYPE, ServeMetrics
from embedtune.serve.schemas import (
    EmbeddingRequest,
    EmbeddingResponse,
    EmbedRequest,
    Info,
    ModelList,
    OpenAIError,
    TEIError,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["create_app", "serve", "ApiError"]

log = logging.getLogger(__name__)

_OPENAI_TYPES = {401: "authentication_error", 404: "not_found_error", 500: "server_error"}
_TEI_TYPES = {
    401: "Unauthorized",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "Validation",
    422: "Validation",
    500: "Backend",
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
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.tei_type = tei_type


def _is_openai(path: str) -> bool:
    return path.startswith("/v1/") or path == "/v1"


def _error_response(request: Request, err: ApiError) -> JSONResponse:
    path = request.url.path
    if _is_openai(path):
        kind = _OPENAI_TYPES.get(err.status, "invalid_request_error")
        body: dict[str, Any] = {
            "error": {"message": err.message, "type": kind, "param": err.param, "code": err.code}
        }
    else:
        kind = err.tei_type or _TEI_TYPES.get(err.status, "Validation")
        body = {"error": err.message, "error_type": kind}
    metrics: ServeMetrics | None = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.observe_error(path, err.code or kind)
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    return JSONResponse(body, status_code=err.status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
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
            return "the request body must be a JSON object", None
        field = ".".join(loc) or "body"
        param = param or field
        parts.append(f"'{field}': {e.get('msg', 'invalid value')}")
    return "invalid request: " + "; ".join(parts), param


class _Instrument:
    """ASGI middleware counting every request by route and status, errors included."""

    def __init__(self, app: Any, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe_request(scope["path"], status, time.perf_counter() - start)


def _model_info(model: SentenceTransformer) -> tuple[int, int | None, dict[str, str]]:
    dim = model.get_embedding_dimension()
    if dim is None:
        dim = int(model.encode(["probe"], convert_to_numpy=True).shape[1])
    max_len = model.max_seq_length
    prompts = {k: v or "" for k, v in (model.prompts or {}).items()}
    return int(dim), (int(max_len) if max_len else None), prompts


def create_app(
    model: SentenceTransformer,
    settings: ServeConfig | None = None,
    *,
    model_name: str,
    model_path: str | None = None,
    api_key: str | None = None,
) -> FastAPI:
    """The FastAPI app serving ``model``; ``api_key`` defaults to ``$<settings.api_key_env>``."""
    settings = settings or ServeConfig()
    if api_key is None:
        api_key = os.environ.get(settings.api_key_env) or None
    dim, max_len, prompts = _model_info(model)
    default_prompt = getattr(model, "default_prompt_name", None)
    backend_name = settings.backend if model.get_backend() == "onnx" else model.get_backend()
    metrics = ServeMetrics()
    # A private tokenizer for counting tokens in another thread: fast tokenizers raise "Already
    # borrowed" when one instance is used from two threads while the model is encoding.
    tokenizer = copy.deepcopy(model.tokenizer)
    from concurrent.futures import ThreadPoolExecutor

    token_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedtune-tokens")

    def encode(texts: list[str], prompt_name: str | None) -> np.ndarray:
        return model.encode(
            texts,
            prompt_name=prompt_name,
            batch_size=settings.max_batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    batcher = Batcher(
        encode,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        on_batch=metrics.observe_batch,
        on_queue=metrics.queue_depth.set,
    )

    def count_tokens(texts: list[str], prompt: str) -> list[int]:
        enc = tokenizer(
            [prompt + t for t in texts] if prompt else texts,
            add_special_tokens=True,
            truncation=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )
        return [len(ids) for ids in enc["input_ids"]]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.close()
            batcher.shutdown()
            token_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="embedtune",
        summary=f"Embeddings from {model_name}",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.state.batcher = batcher
    app.state.settings = settings
    app.add_middleware(_Instrument, metrics=metrics)

    # ------------------------------------------------------------------ errors
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return _error_response(request, ApiError(422, message, param=param, code="invalid_request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            detail = f"no route {request.method} {request.url.path}; see /docs for the routes"
        return _error_response(request, ApiError(exc.status_code, detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error while serving %s", request.url.path)
        return _error_response(
            request,
            ApiError(
                500,
                f"internal error: {type(exc).__name__}: {exc}",
                code="internal_error",
                tei_type="Backend",
            ),
        )

    # ------------------------------------------------------------- shared steps
    def check_key(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            given.strip().encode(), api_key.encode()
        ):
            raise ApiError(
                401,
                "missing or wrong API key: send the header 'Authorization: Bearer <key>' with the "
                f"key the server was started with (--api-key or ${settings.api_key_env})",
                code="invalid_api_key",
                tei_type="Unauthorized",
            )

    def texts_from(value: Any, field: str) -> list[str]:
        if isinstance(value, str):
            texts = [value]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            texts = value
        elif (
            isinstance(value, list)
            and value
            and all(
                isinstance(v, int)
                and not isinstance(v, bool)
                or isinstance(v, list)
                and all(isinstance(t, int) for t in v)
                for v in value
            )
        ):
            raise ApiError(
                422,
                f"'{field}' holds token ids; this server takes text only, because token ids from "
                "another tokenizer (e.g. tiktoken) mean nothing to this model. Send strings "
                "(LangChain's OpenAIEmbeddings: set check_embedding_ctx_length=False)",
                param=field,
                code="token_ids_not_supported",
            )
        else:
            raise ApiError(
                422,
                f"'{field}' must be a string or a list of strings, not {_json_type(value)}",
                param=field,
                code="invalid_type",
            )
        if not texts:
            raise ApiError(
                422,
                f"'{field}' is an empty list; send at least one text",
                param=field,
                code="empty_input",
                tei_type="Empty",
            )
        if len(texts) > settings.max_inputs:
            raise ApiError(
                413,
                f"'{field}' has {len(texts)} texts, more than max_inputs={settings.max_inputs} per "
                "request; split it, or raise serve.max_inputs",
                param=field,
                code="max_inputs_exceeded",
            )
        for i, text in enumerate(texts):
            if not text.strip():
                raise ApiError(
                    422,
                    f"'{field}'[{i}] is empty; every input needs some text",
                    param=field,
                    code="empty_input",
                    tei_type="Empty",
                )
            if len(text) > settings.max_chars:
                raise ApiError(
                    413,
                    f"'{field}'[{i}] has {len(text)} characters, more than "
                    f"max_chars={settings.max_chars}; shorten it, or raise serve.max_chars",
                    param=field,
                    code="max_chars_exceeded",
                )
        return texts

    def resolve_prompt(name: str | None) -> str:
        if name is None:
            return prompts.get(default_prompt, "") if default_prompt else ""
        if name not in (model.prompts or {}):
            available = ", ".join(sorted(model.prompts or {})) or "none"
            raise ApiError(
                422,
                f"unknown prompt_name {name!r}; this model's prompts are: {available}",
                param="prompt_name",
                code="unknown_prompt",
            )
        return model.prompts[name] or ""

    def check_dimensions(dimensions: int | None) -> None:
        if dimensions is not None and dimensions > dim:
            raise ApiError(
                422,
                f"dimensions={dimensions} is more than the model's {dim}; ask for {dim} or fewer",
                param="dimensions",
                code="invalid_dimensions",
            )

    async def tokens_of(texts: list[str], prompt: str) -> list[int]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(token_pool, count_tokens, texts, prompt)

    def finish(vectors: np.ndarray, dimensions: int | None, normalize: bool) -> np.ndarray:
        if dimensions is not None and dimensions < vectors.shape[1]:
            vectors = vectors[:, :dimensions]
        if normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    # ------------------------------------------------------------------ routes
    @app.post(
        "/v1/embeddings",
        response_model=EmbeddingResponse,
        responses={
            401: {"model": OpenAIError},
            413: {"model": OpenAIError},
            422: {"model": OpenAIError},
        },
    )
    async def openai_embeddings(body: EmbeddingRequest, request: Request) -> Response:
        """Create embeddings, as OpenAI's ``POST /v1/embeddings`` does."""
        check_key(request)
        texts = texts_from(body.input, "input")
        check_dimensions(body.dimensions)
        prompt = resolve_prompt(body.prompt_name)
        counts = await tokens_of(texts, prompt)
        vectors = await batcher.encode(texts, body.prompt_name)
        vectors = finish(vectors, body.dimensions, normalize=True)
        used = sum(min(n, max_len) if max_len else n for n in counts)
        metrics.inputs.labels(route="/v1/embeddings").inc(len(texts))
        metrics.tokens.labels(route="/v1/embeddings").inc(used)
        if body.encoding_format == "base64":
            items = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
        else:
            items = vectors.tolist()
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)
                ],
                "model": body.model or model_name,
                "usage": {"prompt_tokens": used, "total_tokens": used},
            }
        )

    @app.get("/v1/models", response_model=ModelList)
    async def openai_models(request: Request) -> dict[str, Any]:
        """The one model served, as OpenAI's ``GET /v1/models`` lists models."""
        check_key(request)
        created = int(app.state.started)
        return {
            "object": "list",
            "data": [
                {"id": model_name, "object": "model", "created": created, "owned_by": "embedtune"}
            ],
        }

    @app.post(
        "/embed",
        response_model=list[list[float]],
        responses={401: {"model": TEIError}, 413: {"model": TEIError}, 422: {"model": TEIError}},
    )
    async def tei_embed(body: EmbedRequest, request: Request) -> Response:
        """Embed ``inputs``, as text-embeddings-inference's ``POST /embed`` does."""
        check_key(request)
        texts = texts_from(body.inputs, "inputs")
        check_dimensions(body.dimensions)
        prompt = resolve_prompt(body.prompt_name)
        counts = await tokens_of(texts, prompt)
        if max_len and not body.truncate:
            for i, n in enumerate(counts):
                if n > max_len:
                    raise ApiError(
                        413,
                        f"Input validation error: `inputs`[{i}] has {n} tokens but the model "
                        f"reads at most {max_len} (max_seq_length); shorten it, or send "
                        '"truncate": true to embed only its start',
                        param="inputs",
                        code="input_too_long",
                    )
        vectors = await batcher.encode(texts, body.prompt_name)
        vectors = finish(vectors, body.dimensions, normalize=body.normalize)
        metrics.inputs.labels(route="/embed").inc(len(texts))
        metrics.tokens.labels(route="/embed").inc(
            sum(min(n, max_len) if max_len else n for n in counts)
        )
        return JSONResponse(vectors.tolist())

    @app.get("/health")
    async def health() -> dict[str, str]:
        """200 once the model is loaded; never needs the API key (for load balancer probes)."""
        return {"status": "ok"}

    @app.get("/info", response_model=Info)
    async def info(request: Request) -> dict[str, Any]:
        """What is served and with which limits."""
        check_key(request)
        return {
            "model_id": model_name,
            "model_path": model_path,
            "dimension": dim,
            "max_seq_length": max_len,
            "max_input_length": max_len,
            "prompts": prompts,
            "default_prompt_name": default_prompt,
            "backend": backend_name,
            "max_batch_size": settings.max_batch_size,
            "max_wait_ms": settings.max_wait_ms,
            "max_inputs": settings.max_inputs,
            "max_client_batch_size": settings.max_inputs,
            "max_chars": settings.max_chars,
            "auth": api_key is not None,
            "version": _version(),
        }

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        """Counters and histograms in Prometheus' text format."""
        check_key(request)
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    app.state.started = time.time()
    return app


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list with non-string items"
    return type(value).__name__


def _version() -> str:
    try:
        return metadata.version("embedtune")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def serve(
    model_path: str,
    settings: ServeConfig | None = None,
    *,
    api_key: str | None = None,
    log_level: str = "info",
) -> None:
    """Load ``model_path`` (alias, hub id or folder) with ``settings.backend`` and serve it."""
    import uvicorn

    from embedtune.models import resolve_model
    from embedtune.serve.backends import load_backend

    settings = settings or ServeConfig()
    model = load_backend(model_path, settings.backend)
    app = create_app(
        model,
        settings,
        model_name=model_path,
        model_path=resolve_model(model_path),
        api_key=api_key,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level)
