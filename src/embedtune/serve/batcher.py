"""Coalesce concurrent requests into one model call.

Sixty-four clients each sending one text should cost one forward pass over 64 texts, not 64
passes over one: on a CPU a batch of 32 runs several times faster per text than 32 single calls.
Requests go into an asyncio queue; a collector task takes what is waiting (up to
``max_batch_size`` texts, waiting at most ``max_wait_ms`` for more after the first), and a single
worker thread runs the model on it, so the event loop keeps accepting requests meanwhile. While the
model is busy, new requests pile up and are taken together as soon as it is free: under load the
batches fill by themselves and the wait costs nothing.

    >>> batcher = Batcher(lambda texts, prompt_name: model.encode(texts), max_batch_size=64)
    >>> vectors = await batcher.encode(["first text", "second text"])   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Batcher", "EncodeFn"]

EncodeFn = Callable[[list[str], str | None], np.ndarray]
"""``encode(texts, prompt_name) -> float32 array (len(texts), dim)``; run in the worker thread."""


@dataclass
class _Job:
    texts: list[str]
    prompt_name: str | None
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Queue texts from many requests and run them through ``encode`` in shared batches.

    ``on_batch(size, seconds)`` is called after every model call (for metrics); ``on_queue(n)``
    whenever the number of waiting texts changes.
    """

    def __init__(
        self,
        encode: EncodeFn,
        *,
        max_batch_size: int = 64,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int, float], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self._encode = encode
        self.max_batch_size = max_batch_size
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self._on_batch = on_batch
        self._on_queue = on_queue
        # One thread: the model is not thread-safe, and torch already uses every core per call.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedtune-encode")
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._carry: _Job | None = None
        self._waiting = 0
        self.batches = 0  # model calls made, for tests and /info

    # ----------------------------------------------------------------- lifecycle
    def _ensure_started(self) -> asyncio.Queue[_Job]:
        loop = asyncio.get_running_loop()
        if self._task is None or self._loop is not loop or self._task.done():
            # A new event loop (a test client without lifespan, a restarted server): start over.
            self._loop = loop
            self._queue = asyncio.Queue()
            self._carry = None
            self._waiting = 0
            self._task = loop.create_task(self._run(), name="embedtune-batcher")
        assert self._queue is not None
        return self._queue

    async def start(self) -> None:
        self._ensure_started()

    async def close(self) -> None:
        """Stop collecting; jobs still queued fail with RuntimeError rather than hang."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pending = [self._carry] if self._carry else []
        self._carry = None
        if self._queue is not None:
            while not self._queue.empty():
                pending.append(self._queue.get_nowait())
        for job in pending:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))

    def shutdown(self) -> None:
        """Release the worker thread (after :meth:`close`)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -------------------------------------------------------------------- public
    async def encode(self, texts: list[str], prompt_name: str | None = None) -> np.ndarray:
        """Embed ``texts`` (in order) as part of whatever batch is being formed."""
        queue = self._ensure_started()
        loop = asyncio.get_running_loop()
        jobs = []
        # A request larger than a batch is split, so it cannot hold up everyone else's texts.
        for start in range(0, len(texts), self.max_batch_size):
            job = _Job(
                texts[start : start + self.max_batch_size], prompt_name, loop.create_future()
            )
            jobs.append(job)
            queue.put_nowait(job)
            self._queued(len(job.texts))
        try:
            parts = await asyncio.gather(*(job.future for job in jobs))
        except BaseException:
            for job in jobs:
                job.future.cancel()  # the collector skips cancelled jobs
            raise
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    # ------------------------------------------------------------------ internal
    def _queued(self, delta: int) -> None:
        self._waiting += delta
        if self._on_queue is not None:
            self._on_queue(self._waiting)

    async def _next_batch(self, queue: asyncio.Queue[_Job]) -> list[_Job]:
        loop = asyncio.get_running_loop()
        first = self._carry if self._carry is not None else await queue.get()
        self._carry = None
        batch, size = [first], len(first.texts)
        deadline = loop.time() + self.max_wait
        while size < self.max_batch_size:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
            if size + len(job.texts) > self.max_batch_size:
                self._carry = job  # first in line for the next batch
                break
            batch.append(job)
            size += len(job.texts)
        self._queued(-size)
        return [job for job in batch if not job.future.done()]

    def _call(self, texts: list[str], prompt_name: str | None) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        out = np.asarray(self._encode(texts, prompt_name), dtype=np.float32)
        return out, time.perf_counter() - start

    async def _encode_jobs(self, jobs: list[_Job], prompt_name: str | None) -> None:
        loop = asyncio.get_running_loop()
        texts = [t for job in jobs for t in job.texts]
        try:
            vectors, seconds = await loop.run_in_executor(
                self._executor, self._call, texts, prompt_name
            )
        except Exception as exc:
            if len(jobs) > 1:
                # One bad request must not fail the others that shared its batch: retry each alone.
                for job in jobs:
                    await self._encode_jobs([job], prompt_name)
                return
            if not jobs[0].future.done():
                jobs[0].future.set_exception(exc)
            return
        self.batches += 1
        if self._on_batch is not None:
            self._on_batch(len(texts), seconds)
        offset = 0
        for job in jobs:
            n = len(job.texts)
            if not job.future.done():
                job.future.set_result(vectors[offset : offset + n])
            offset += n

    async def _run(self) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            batch = await self._next_batch(queue)
            if not batch:
                continue
            # Texts with different prompts cannot share a model call; most batches have one group.
            groups: dict[str | None, list[_Job]] = {}
            for job in batch:
                groups.setdefault(job.prompt_name, []).append(job)
            for prompt_name, jobs in groups.items():
                await self._encode_jobs(jobs, prompt_name)
