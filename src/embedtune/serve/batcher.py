"""Share model calls between concurrent requests, fairly.

Sixty-four clients each sending one text should cost one forward pass over 64 texts, not 64
passes over one: on a CPU a batch runs several times faster per text than single calls. A
single worker thread runs the model, so the event loop keeps accepting requests meanwhile.

Sharing must be fair, and a forward pass costs its texts times the longest of them, so:

- the request that has waited longest since the model last worked for it (or since it came)
  starts the next batch with its shortest waiting text;
- the other waiting requests then add one text each in turn, shortest first, as long as it is
  of a similar length (at most twice as long or short, or both short), until the batch holds
  ``max_batch_size`` texts or ``max_batch_tokens`` padded tokens.

A one-word request sent while 1,000 long texts are waiting therefore runs as soon as the batch
in flight is done, in a short batch of its own kind: it never waits for the whole queue, nor
for a batch of long texts it was added to. Every request's wait grows until it is the longest,
so none starves.

With turns like these a newcomer waits about one text's time per request in progress, so the
server bounds the queue by admitting requests (see :class:`embedtune.serve.guards.Admission`,
which reads :attr:`Batcher.texts_per_s`). A request whose caller stops waiting (its task is
cancelled: the client hung up) leaves the queue; its texts already in a running batch finish and
are dropped.

    >>> batcher = Batcher(lambda texts, prompt_name: model.encode(texts), max_batch_size=64)
    >>> vectors = await batcher.encode(["first text", "second text"])   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Batcher", "EncodeFn", "ShuttingDown"]

# Texts up to this many tokens count as "short": they share batches whatever their lengths.
SHORT_TOKENS = 32

EncodeFn = Callable[[list[str], str | None], np.ndarray]
"""``encode(texts, prompt_name) -> float32 array (len(texts), dim)``; run in the worker thread."""


class ShuttingDown(RuntimeError):
    """The batcher closed before the request was embedded."""


@dataclass(eq=False)
class _Request:
    """One caller's texts, taken into batches a few at a time."""

    texts: list[str]
    costs: Sequence[int]
    prompt_name: str | None
    future: asyncio.Future = field(repr=False)
    since: float = 0.0  # when it came, then when the model last returned some of its texts
    order: list[int] = field(init=False)  # indices into texts, cheapest first
    taken: int = 0  # how many of ``order`` are in batches
    done: int = 0  # how many have vectors
    parts: list[tuple[list[int], np.ndarray]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.order = sorted(range(len(self.texts)), key=self.costs.__getitem__)

    @property
    def waiting(self) -> int:
        return len(self.order) - self.taken

    @property
    def next_cost(self) -> int:
        return self.costs[self.order[self.taken]]

    def deliver(self, indices: list[int], vectors: np.ndarray) -> None:
        self.parts.append((indices, vectors))
        self.done += len(indices)
        if self.done == len(self.texts) and not self.future.done():
            out = np.empty((len(self.texts), vectors.shape[1]), dtype=np.float32)
            for idx, part in self.parts:
                out[idx] = part
            self.future.set_result(out)


# A batch: which texts of which requests, in the order they go to the model.
_Batch = list[tuple[_Request, list[int]]]


class Batcher:
    """Queue texts from many requests and run them through ``encode`` in shared, fair batches.

    ``on_batch(size, seconds)`` is called after every model call (for metrics); ``on_queue(n)``
    whenever the number of waiting texts changes.
    """

    def __init__(
        self,
        encode: EncodeFn,
        *,
        max_batch_size: int = 64,
        max_batch_tokens: int | None = None,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int, float], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self._encode = encode
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens or math.inf
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self._on_batch = on_batch
        self._on_queue = on_queue
        # One thread: the model is not thread-safe, and torch already uses every core per call.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedtune-encode")
        self._ring: list[_Request] = []  # requests with texts not yet in a batch
        self._inflight: list[_Request] = []
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting = 0
        self.texts_per_s: float | None = None  # recent model throughput, None before any call
        self.batches = 0  # model calls made, for tests and /metrics

    # ----------------------------------------------------------------- lifecycle
    def _ensure_started(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._task is None or self._loop is not loop or self._task.done():
            # A new event loop (a test client without lifespan, a restarted server): start over.
            self._loop = loop
            self._ring.clear()
            self._inflight = []
            self._queued(-self._waiting)
            self._arrived = asyncio.Event()
            self._task = loop.create_task(self._run(), name="embedtune-batcher")
        assert self._arrived is not None
        return self._arrived

    async def start(self) -> None:
        self._ensure_started()

    async def close(self) -> None:
        """Stop collecting; requests still waiting fail with :class:`ShuttingDown`."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for request in [*self._ring, *self._inflight]:
            if not request.future.done():
                request.future.set_exception(ShuttingDown("the server is shutting down"))
        self._ring.clear()
        self._inflight = []
        self._queued(-self._waiting)

    def shutdown(self) -> None:
        """Release the worker thread (after :meth:`close`)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -------------------------------------------------------------------- public
    @property
    def waiting(self) -> int:
        """Texts queued and not yet in a batch."""
        return self._waiting

    async def encode(
        self,
        texts: list[str],
        prompt_name: str | None = None,
        *,
        costs: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Embed ``texts`` (in order) in shared batches.

        ``costs`` are each text's tokens (after truncation), for ``max_batch_tokens``; without
        them every text counts as one token.
        """
        if not texts:
            raise ValueError("encode needs at least one text")
        arrived = self._ensure_started()
        loop = asyncio.get_running_loop()
        costs = costs if costs is not None else [1] * len(texts)
        request = _Request(texts, costs, prompt_name, loop.create_future(), since=loop.time())
        self._ring.append(request)
        self._queued(len(texts))
        arrived.set()
        try:
            return await request.future
        except asyncio.CancelledError:
            self._drop(request)  # the caller is gone: its texts leave the queue
            raise

    # ------------------------------------------------------------------ internal
    def _queued(self, delta: int) -> None:
        self._waiting += delta
        if self._on_queue is not None and delta:
            self._on_queue(self._waiting)

    def _drop(self, request: _Request) -> None:
        if request in self._ring:
            self._ring.remove(request)
            self._queued(-request.waiting)
        request.taken = len(request.order)

    def _take_batch(self) -> _Batch:
        """The longest-waiting request's next text, then similar ones from each request in turn."""
        turns = sorted(self._ring, key=lambda r: r.since)
        seed_cost = turns[0].next_cost
        picked: dict[_Request, list[int]] = {}
        size, longest, full = 0, 0, False
        while not full:
            before = size
            for request in turns:
                if not request.waiting or size and not _similar(request.next_cost, seed_cost):
                    continue
                widest = max(longest, request.next_cost)
                if size and (size + 1) * widest > self.max_batch_tokens:
                    full = True
                    break
                picked.setdefault(request, []).append(request.order[request.taken])
                request.taken += 1
                size, longest = size + 1, widest
                if size == self.max_batch_size:
                    full = True
                    break
            full = full or size == before
        self._ring = [r for r in self._ring if r.waiting]
        self._queued(-size)
        return list(picked.items())

    async def _wait_for_more(self, arrived: asyncio.Event) -> None:
        """Give a batch that is not full ``max_wait`` to fill: under load it is full already."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while self._waiting < self.max_batch_size:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), remaining)
            except TimeoutError:
                return

    def _call(self, texts: list[str], prompt_name: str | None) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        out = np.asarray(self._encode(texts, prompt_name), dtype=np.float32)
        return out, time.perf_counter() - start

    async def _encode_group(self, group: _Batch, prompt_name: str | None) -> None:
        loop = asyncio.get_running_loop()
        texts = [request.texts[i] for request, indices in group for i in indices]
        try:
            vectors, seconds = await loop.run_in_executor(
                self._executor, self._call, texts, prompt_name
            )
        except Exception as exc:
            if len(group) > 1:
                # One bad request must not fail the others that shared its batch: retry each alone.
                for member in group:
                    await self._encode_group([member], prompt_name)
                return
            request = group[0][0]
            self._drop(request)
            if not request.future.done():
                request.future.set_exception(exc)
            return
        self.batches += 1
        rate = len(texts) / max(seconds, 1e-6)
        self.texts_per_s = rate if self.texts_per_s is None else 0.7 * self.texts_per_s + 0.3 * rate
        if self._on_batch is not None:
            self._on_batch(len(texts), seconds)
        offset = 0
        for request, indices in group:
            request.deliver(indices, vectors[offset : offset + len(indices)])
            offset += len(indices)

    async def _run(self) -> None:
        arrived = self._arrived
        assert arrived is not None
        while True:
            if not self._ring:
                arrived.clear()
                await arrived.wait()
                continue
            await self._wait_for_more(arrived)
            batch = self._take_batch()
            self._inflight = [request for request, _ in batch]
            # Texts with different prompts cannot share a model call; most batches have one group.
            groups: dict[str | None, _Batch] = {}
            for request, indices in batch:
                if not request.future.done():
                    groups.setdefault(request.prompt_name, []).append((request, indices))
            for prompt_name, group in groups.items():
                await self._encode_group(group, prompt_name)
            self._inflight = []
            now = asyncio.get_running_loop().time()
            for request, _ in batch:
                request.since = now


def _similar(cost: int, seed_cost: int) -> bool:
    """Whether a text of ``cost`` tokens pads little in a batch started by one of ``seed_cost``."""
    return max(cost, seed_cost) <= 2 * max(min(cost, seed_cost), SHORT_TOKENS)
