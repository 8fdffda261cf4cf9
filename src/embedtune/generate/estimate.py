"""How long a generate run will take on this machine: the dry run's estimate of each step.

The steps that take time are the writer's calls and the round trip's encoding pass (its judge,
the teacher by default, encodes every chunk questions are written for, then the questions).
Each estimate comes from a rate measured on this machine, the first of:

1. the rate recorded by the last real run here (``cache_dir()/rates.json``, see
   :mod:`embedtune.progress`): seconds per call of the local writer with the same model, dtype
   and batch; characters per second of the judge;
2. the replies already in this run's reply cache (each records its seconds);
3. a calibration, done by the dry run itself: the local writer loaded and timed on one small
   batch of this run's own prompts (its replies are not kept), the judge timed on a sample of
   the chunks it will encode (their embeddings are kept in the shared embedding cache, so the
   real run does not encode them again).

An OpenAI-compatible server's time depends on the server: it is estimated from the latencies of
this run's cached replies, else of the last run against that server and model here, else
assumed to be 2 s a call (hosted models take about 1-3 s), divided by the calls in flight.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from statistics import median
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from embedtune.embeddings import EmbeddingCache, model_fingerprint
from embedtune.models import load_model
from embedtune.progress import record_rate, recorded_rate

if TYPE_CHECKING:
    from embedtune.generate.local import LocalBackend

__all__ = [
    "StepEstimate",
    "record_local_rate",
    "record_server_latency",
    "writer_estimate",
    "judge_estimate",
    "CALIBRATION_CALLS",
    "CALIBRATION_TEXTS",
    "QUESTION_CHARS",
]

#: Calls timed to calibrate the local writer: one small batch (about 10-20 s on 2 cores).
CALIBRATION_CALLS = 8
#: Chunks the judge encodes to calibrate its speed (kept in the embedding cache).
CALIBRATION_TEXTS = 32
#: An OpenAI-compatible server's latency when none was measured (hosted models: about 1-3 s).
ASSUMED_LATENCY = 2.0
#: A generated question's typical length, for the judge's estimate before questions exist.
QUESTION_CHARS = 70


class StepEstimate(BaseModel):
    """One step of a run: what it does, how long it should take here, and how that was found."""

    step: str
    seconds: float | None = None  # None: no rate to go by
    how: str


def _local_key(backend: LocalBackend) -> str:
    kind = "per-question" if backend.per_question else "list"
    return f"{backend.model}|{backend.dtype}|batch {backend.batch_size}|{kind}"


def record_local_rate(backend: LocalBackend, calls: int, seconds: float) -> None:
    """Keep the local writer's seconds per call (and its loading time) for later estimates."""
    if calls < 1 or seconds <= 0:
        return
    record_rate(
        "local-writer",
        _local_key(backend),
        seconds_per_call=round(seconds / calls, 3),
        load_seconds=round(backend.load_seconds or 0.0, 1),
        calls=calls,
    )


def _cached_seconds(rows: Sequence[dict[str, Any]], backend: str, model: str) -> list[float]:
    return [
        float(r["seconds"])
        for r in rows
        if r.get("backend") == backend and r.get("model") == model and r.get("seconds")
    ]


def writer_estimate(
    backend: Any,
    calls: Sequence[Any],
    cached_rows: Sequence[dict[str, Any]],
    *,
    calibrate: bool = True,
) -> StepEstimate:
    """How long the writer's ``calls`` (those not cached) take. ``backend`` is a LocalBackend or
    an OpenAIBackend; ``cached_rows``, this run's cached replies; ``calibrate``: time a small
    batch of the local writer when no rate is known."""
    n = len(calls)
    step = f"writer: {n:,} call(s) to {backend.name} / {backend.model}"
    if n == 0:
        return StepEstimate(step=step, seconds=0.0, how="every reply is cached")
    if backend.name != "local":
        return _server_estimate(backend, n, step, cached_rows)
    recorded = recorded_rate("local-writer", _local_key(backend))
    if recorded:
        per_call = float(recorded["seconds_per_call"])
        load = float(recorded.get("load_seconds", 0.0))
        return StepEstimate(
            step=step,
            seconds=n * per_call + load,
            how=f"{per_call:.2f} s a call and {load:.0f} s to load, measured here on "
            f"{recorded['when']}",
        )
    seconds = _cached_seconds(cached_rows, backend.name, backend.model)
    if len(seconds) >= 4:
        per_call = median(seconds)
        return StepEstimate(
            step=step,
            seconds=n * per_call + 20.0,
            how=f"{per_call:.2f} s a call, the median of the {len(seconds)} replies in this "
            "run's cache, and ~20 s to load",
        )
    if not calibrate:
        return StepEstimate(step=step, how="no rate measured here yet")
    return _calibrate_local(backend, calls, step, n)


def _calibrate_local(
    backend: LocalBackend, calls: Sequence[Any], step: str, n: int
) -> StepEstimate:
    t0 = time.perf_counter()
    backend.load()
    load = time.perf_counter() - t0
    sample = _typical_calls(calls, CALIBRATION_CALLS)
    t0 = time.perf_counter()
    for start in range(0, len(sample), backend.batch_size):
        backend.complete_batch([c.prompt for c in sample[start : start + backend.batch_size]])
    per_call = (time.perf_counter() - t0) / len(sample)
    record_local_rate(backend, len(sample), per_call * len(sample))
    return StepEstimate(
        step=step,
        seconds=n * per_call + load,
        how=f"{per_call:.2f} s a call, timed now on {len(sample)} of this run's calls (one "
        f"batch; full batches of {backend.batch_size} are a little faster), and {load:.0f} s "
        "to load; recorded for the next dry run",
    )


def _typical_calls(calls: Sequence[Any], n: int) -> list[Any]:
    """About ``n`` calls from chunks of middling length, each chunk's calls together."""
    by_chunk: dict[str, list[Any]] = {}
    for call in calls:
        by_chunk.setdefault(f"{call.split}/{call.chunk.id}", []).append(call)
    groups = sorted(by_chunk.values(), key=lambda g: len(g[0].chunk.text))
    middle = len(groups) // 2
    picked: list[Any] = []
    for offset in range(len(groups)):
        i = middle + (offset + 1) // 2 * (1 if offset % 2 else -1)
        if 0 <= i < len(groups):
            picked += groups[i]
        if len(picked) >= n:
            break
    return picked[: max(n, 1)]


def _server_key(backend: Any) -> str:
    return f"{backend.cfg.base_url or 'https://api.openai.com/v1'}|{backend.model}"


def record_server_latency(backend: Any, seconds: Sequence[float]) -> None:
    """Keep the median latency of a server's calls for later estimates."""
    if len(seconds) >= 4:
        record_rate("server", _server_key(backend), seconds_per_call=round(median(seconds), 3))


def _server_estimate(
    backend: Any, n: int, step: str, cached_rows: Sequence[dict[str, Any]]
) -> StepEstimate:
    concurrency = backend.cfg.concurrency
    seconds = _cached_seconds(cached_rows, backend.name, backend.model)
    recorded = recorded_rate("server", _server_key(backend))
    if seconds:
        latency = median(seconds)
        how = f"{latency:.1f} s a call (median of {len(seconds)} cached replies)"
    elif recorded:
        latency = float(recorded["seconds_per_call"])
        how = f"{latency:.1f} s a call, measured here on {recorded['when']}"
    else:
        latency = ASSUMED_LATENCY
        how = f"assuming {latency:.0f} s a call (hosted models take about 1-3 s; none timed yet)"
    return StepEstimate(
        step=step,
        seconds=n * latency / concurrency,
        how=f"{how}, {concurrency} in flight",
    )


def judge_estimate(
    judge: str,
    chunk_texts: Sequence[str],
    questions: int,
    *,
    dtype: str = "float32",
    calibrate: bool = True,
) -> StepEstimate:
    """How long the round trip's ``judge`` takes to encode ``chunk_texts`` (those its embedding
    cache lacks) and about ``questions`` questions with ``dtype`` weights; calibrated on a sample
    when never measured."""
    cache = EmbeddingCache(model_fingerprint(judge, dtype=dtype))
    chunks = cache.missing(chunk_texts, "document")
    step = (
        f"round trip: {judge} encodes {len(chunks):,} chunk(s)"
        + (
            f" ({len(chunk_texts) - len(chunks):,} cached)"
            if len(chunks) < len(chunk_texts)
            else ""
        )
        + f" and up to {questions:,} question(s)"
    )
    chars = sum(len(t) for t in chunks) + questions * QUESTION_CHARS
    rate = recorded_rate("encode", cache.fingerprint) if cache.fingerprint else None
    if rate and rate.get("chars_per_second"):
        cps = float(rate["chars_per_second"])
        load = rate.get("load_seconds")
        return StepEstimate(
            step=step,
            seconds=chars / cps + float(load or 0.0),
            how=f"{cps:,.0f} characters a second, measured here on {rate['when']}"
            + (f", and {float(load):.0f} s to load" if load else ", plus loading it"),
        )
    if not calibrate or not chunks:
        return StepEstimate(step=step, how="no rate measured here yet")
    t0 = time.perf_counter()
    model = load_model(judge, device="cpu", dtype=dtype)
    load = time.perf_counter() - t0
    sample = sorted(chunks, key=len)[len(chunks) // 2 :][:CALIBRATION_TEXTS]  # middling and up
    model.encode_document(sample[:1])  # the first call pays for warming up: not timed
    t0 = time.perf_counter()
    cache.encode_with(model, sample, "document", batch_size=CALIBRATION_TEXTS)
    cps = sum(len(t) for t in sample) / max(time.perf_counter() - t0, 1e-6)
    if cache.fingerprint and len(sample) >= CALIBRATION_TEXTS // 2:  # a few texts time overhead
        record_rate(
            "encode", cache.fingerprint, chars_per_second=round(cps, 1), load_seconds=round(load, 1)
        )
    rest = chars - sum(len(t) for t in sample)
    return StepEstimate(
        step=step,
        seconds=rest / cps + load,
        how=f"{cps:,.0f} characters a second, timed now on {len(sample)} chunks (kept in the "
        f"embedding cache), and {load:.0f} s to load",
    )
