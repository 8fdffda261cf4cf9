"""The HTTP routes: OpenAI's ``/v1/embeddings`` and ``/v1/models``, text-embeddings-inference's
``/embed`` and ``/info``, and ``/health`` and ``/metrics``.

Each route is a plain function of its body and the app's :class:`EmbeddingService` (found on
``request.app.state.service``), so it reads top to bottom: check, count, embed, answer. The key,
the body size and admission are checked before a route runs (see :mod:`embedtune.serve.guards`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from embedtune.serve.errors import ApiError
from embedtune.serve.guards import CLIENT_CLOSED
from embedtune.serve.inputs import texts_from
from embedtune.serve.metrics import CONTENT_TYPE
from embedtune.serve.schemas import (
    EmbeddingRequest,
    EmbeddingResponse,
    EmbedRequest,
    Info,
    ModelList,
    OpenAIError,
    TEIError,
)
from embedtune.serve.service import Embedded, EmbeddingService

__all__ = ["router", "service_of", "until_disconnect", "ClientGone"]

router = APIRouter()

T = TypeVar("T")

_ERRORS_OPENAI: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenAIError} for code in (401, 413, 422, 429)
}
_ERRORS_TEI: dict[int | str, dict[str, Any]] = {
    code: {"model": TEIError} for code in (401, 413, 422, 429)
}


class ClientGone(Exception):
    """The client disconnected before its embeddings were ready."""


def service_of(request: Request) -> EmbeddingService:
    return request.app.state.service


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """``await work``, cancelled (and ClientGone raised) if the client disconnects first.

    FastAPI has read the body by now, so the next ASGI message can only be the disconnect.
    Cancelling takes the request's texts out of the batcher's queue: nobody computes them.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientGone


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _embed(
    request: Request, value: Any, field: str, prompt_name: str | None, *, truncate: bool
) -> Embedded:
    """The steps both embedding routes share, up to the vectors; ClientGone if it hangs up."""
    service = service_of(request)
    s = service.settings
    texts = texts_from(value, field, max_inputs=s.max_inputs, max_chars=s.max_chars)
    prompt = service.prompt(prompt_name)

    async def count_then_embed() -> Embedded:
        counts = await service.count_tokens(texts, prompt)
        if not truncate:
            _refuse_too_long(counts, service.max_len, field)
        return await service.embed(texts, prompt_name, counts)

    embedded = await until_disconnect(request, count_then_embed())
    service.metrics.inputs.labels(route=request.url.path).inc(len(texts))
    service.metrics.tokens.labels(route=request.url.path).inc(embedded.tokens)
    return embedded


def _refuse_too_long(counts: list[int], max_len: int | None, field: str) -> None:
    for i, n in enumerate(counts):
        if max_len and n > max_len:
            raise ApiError(
                413,
                f"Input validation error: `{field}`[{i}] has {n} tokens but the model reads at "
                f'most {max_len} (max_seq_length); shorten it, or send "truncate": true to embed '
                "only its start",
                param=field,
                code="input_too_long",
            )


@router.post("/v1/embeddings", response_model=EmbeddingResponse, responses=_ERRORS_OPENAI)
async def openai_embeddings(body: EmbeddingRequest, request: Request) -> Response:
    """Create embeddings, as OpenAI's ``POST /v1/embeddings`` does (inputs are truncated)."""
    service = service_of(request)
    service.check_dimensions(body.dimensions)
    try:
        embedded = await _embed(request, body.input, "input", body.prompt_name, truncate=True)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    vectors = service.finish(embedded.vectors, body.dimensions, normalize=True)
    if body.encoding_format == "base64":
        items: list[Any] = [
            base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors
        ]
    else:
        items = vectors.tolist()
    data = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)]
    usage = {"prompt_tokens": embedded.tokens, "total_tokens": embedded.tokens}
    model = body.model or service.model_name
    return JSONResponse({"object": "list", "data": data, "model": model, "usage": usage})


@router.get("/v1/models", response_model=ModelList)
async def openai_models(request: Request) -> dict[str, Any]:
    """The one model served, as OpenAI's ``GET /v1/models`` lists models."""
    service = service_of(request)
    created = int(request.app.state.started)
    model = {"id": service.model_name, "object": "model", "created": created}
    return {"object": "list", "data": [{**model, "owned_by": "embedtune"}]}


@router.post("/embed", response_model=list[list[float]], responses=_ERRORS_TEI)
async def tei_embed(body: EmbedRequest, request: Request) -> Response:
    """Embed ``inputs``, as text-embeddings-inference's ``POST /embed`` does.

    Inputs longer than the model reads get 413 unless ``"truncate": true``.
    """
    service = service_of(request)
    service.check_dimensions(body.dimensions)
    try:
        embedded = await _embed(
            request, body.inputs, "inputs", body.prompt_name, truncate=body.truncate
        )
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    vectors = service.finish(embedded.vectors, body.dimensions, normalize=body.normalize)
    return JSONResponse(vectors.tolist())


@router.get("/health")
async def health() -> dict[str, str]:
    """200 once the model is loaded; never needs the API key (for load balancer probes)."""
    return {"status": "ok"}


@router.get("/info", response_model=Info)
async def info(request: Request) -> dict[str, Any]:
    """What is served and with which limits."""
    return service_of(request).info()


@router.get("/metrics")
async def prometheus(request: Request) -> Response:
    """Counters and histograms in Prometheus' text format."""
    return Response(service_of(request).metrics.render(), media_type=CONTENT_TYPE)
