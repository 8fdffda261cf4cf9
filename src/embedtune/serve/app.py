"""The embeddings HTTP service: OpenAI's and text-embeddings-inference's APIs over one model.

Routes (see :mod:`embedtune.serve.routes`):

- ``POST /v1/embeddings``: OpenAI's shape, so the ``openai`` client (and anything built on it)
  works with ``base_url="http://HOST:PORT/v1"``. Inputs longer than the model's
  ``max_seq_length`` are truncated, as ``model.encode`` does; embeddings are unit length.
- ``POST /embed``: text-embeddings-inference's shape; too-long inputs get 413 unless
  ``"truncate": true``.
- ``GET /v1/models``, ``GET /health``, ``GET /info``, ``GET /metrics`` (Prometheus text).
- ``GET /docs`` (Swagger UI) and ``GET /redoc``: the API's pages, whose scripts and styles the
  server serves itself, so they work offline; ``GET /openapi.json``, the schema.

Concurrent requests share model calls, fairly (see :mod:`embedtune.serve.batcher`). With an API
key (``$EMBEDTUNE_API_KEY``, or the variable named by ``serve.api_key_env``) every route but
``/health`` needs ``Authorization: Bearer KEY``, ``/docs`` and ``/openapi.json`` included, and
a request without it gets 401 before its body is read. Bodies over ``max_body_bytes`` get 413
before they are parsed; when the queue would keep a newcomer waiting more than
``max_queue_seconds``, or ``max_concurrent_requests`` are in progress, it gets 429 with
Retry-After, also before its body is read. Errors never surface as a bare
500 or a traceback: they come as JSON in the shape of the API that was called::

    >>> from fastapi.testclient import TestClient
    >>> from embedtune.models import load_model
    >>> model = load_model("all-MiniLM-L6-v2", device="cpu")
    >>> app = create_app(model, ServeConfig(), model_name="minilm", api_key="secret")
    >>> with TestClient(app) as client:
    ...     no_key = client.post("/embed", json={"inputs": "What is R?"}).status_code
    ...     vectors = client.post("/embed", json={"inputs": "What is R?"},
    ...                           headers={"Authorization": "Bearer secret"}).json()
    >>> no_key, len(vectors), len(vectors[0])
    (401, 1, 384)
"""

from __future__ import annotations

import errno
import gc
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from embedtune.config import ServeConfig
from embedtune.errors import InputError
from embedtune.models import default_device
from embedtune.serve.errors import AnswerUnexpected, ApiError, add_error_handlers
from embedtune.serve.guards import Admission, Instrument, LimitBody, RequireApiKey
from embedtune.serve.routes import router
from embedtune.serve.service import EmbeddingService, version
from embedtune.serve.settings import ServeSettings

if TYPE_CHECKING:
    from embedtune.serve.backends import Encoder

__all__ = ["create_app", "serve", "served_name", "ApiError", "DOCS_ASSETS"]

#: Where the API pages' scripts, styles and icon are served (behind the key, as the pages are).
DOCS_ASSETS = "/docs/assets"


def create_app(
    model: Encoder,
    settings: ServeConfig | None = None,
    *,
    model_name: str,
    api_key: str | None = None,
) -> FastAPI:
    """The FastAPI app serving ``model``; ``api_key`` defaults to ``$<settings.api_key_env>``."""
    settings = ServeSettings.from_config(settings)
    if api_key is None:
        api_key = os.environ.get(settings.api_key_env) or None
    service = EmbeddingService(model, settings, model_name, auth=api_key is not None)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.close()

    # /docs and /redoc with Swagger UI's and ReDoc's files served from the fastapi-offline
    # package, not FastAPI's CDN, so the pages work where the server has no internet; the
    # validator badge, which would send the schema's URL to swagger.io, is off.
    app = FastAPIOffline(
        title="embedtune",
        summary=f"Embeddings from {model_name}",
        version=version(),
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.service = service
    app.state.metrics = service.metrics
    app.state.batcher = service.batcher
    app.state.started = time.time()
    app.include_router(router)
    add_error_handlers(app, max_body_bytes=settings.max_body_bytes)
    # Added innermost first: a request meets Instrument, the key, admission, the body limit.
    app.add_middleware(AnswerUnexpected, metrics=service.metrics)
    app.add_middleware(LimitBody, limit=settings.max_body_bytes, metrics=service.metrics)
    app.add_middleware(
        Admission,
        max_requests=settings.max_concurrent_requests,
        max_wait_s=settings.max_queue_seconds,
        texts_per_s=lambda: service.batcher.texts_per_s,
        metrics=service.metrics,
    )
    if api_key is not None:
        app.add_middleware(
            RequireApiKey, api_key=api_key, key_env=settings.api_key_env, metrics=service.metrics
        )
    app.add_middleware(Instrument, metrics=service.metrics)
    return app


def served_name(model: str) -> str:
    """The name a model is served under: a hub id or alias as given, a folder by its name.

    A path would tell every caller where the server keeps its files, so ``/home/me/runs/first/
    model`` is served as ``first`` (embedtune writes models to RUN/model) and ``/srv/bge-ft``
    as ``bge-ft``.
    """
    path = Path(model)
    if not path.exists():
        return model
    path = path.resolve()
    if path.name == "model" and path.parent.name:
        return path.parent.name
    return path.name or "model"


def serve(
    model_path: str,
    settings: ServeConfig | None = None,
    *,
    api_key: str | None = None,
    model_name: str | None = None,
    log_level: str = "info",
) -> None:
    """Load ``model_path`` (alias, hub id or folder) with ``settings.backend`` and serve it."""
    import uvicorn

    from embedtune.serve.backends import load_backend

    settings = ServeSettings.from_config(settings)
    check_can_listen(settings.host, settings.port)  # before the model loads, not after
    # ONNX backends run on onnxruntime's CPU provider; torch goes to the GPU when there is one.
    device = default_device() if settings.backend == "torch" else "cpu"
    model = load_backend(model_path, settings.backend, device=device)
    app = create_app(
        model, settings, model_name=model_name or served_name(model_path), api_key=api_key
    )
    # The model, torch and transformers leave millions of objects that live as long as the
    # server. Python's full collections walked them all, stopping the event loop 0.3 s at a time
    # (every few seconds under load), so refusals and small requests waited. Frozen, they are
    # left out of every collection; the server's own garbage is still collected.
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level)


def check_can_listen(host: str, port: int) -> None:
    """Bind ``host:port`` as uvicorn will and let go, so that a port in use (or an address this
    machine does not have) is said at once, in one line, rather than by uvicorn's log after the
    model has loaded."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family=family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(
                    f"port {port} on {host} is in use (another server, or embedtune serve "
                    "already running?): stop it or pass another --port"
                ) from None
            raise InputError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}): check --host and --port"
            ) from None
