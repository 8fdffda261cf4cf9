"""The batcher alone: fair turns between requests, batch budgets, throughput, cancellation.

``encode`` here is a plain function that records each model call and returns one row per text
holding the text's number, so a test can see which texts shared a call and in what order they
came back; it sleeps to stand in for the model's time, which is what the schedule is about.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from embedtune.serve.batcher import Batcher, ShuttingDown


class Model:
    """Records every call; ``seconds`` per call; texts containing "boom" raise."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def __call__(self, texts: list[str], prompt_name: str | None) -> np.ndarray:
        time.sleep(self.seconds)
        if any("boom" in t for t in texts):
            raise ValueError("the model cannot read this text")
        with self.lock:
            self.calls.append(list(texts))
        return np.array([[float(t.split("-")[-1]), len(t)] for t in texts], dtype=np.float32)


def run(coro):
    return asyncio.run(coro)


async def _closing(batcher: Batcher, coro):
    try:
        return await coro
    finally:
        await batcher.close()
        batcher.shutdown()


def test_a_small_request_runs_after_the_batch_in_flight_in_a_short_batch_of_its_own():
    model = Model(seconds=0.02)
    batcher = Batcher(model, max_batch_size=64, max_batch_tokens=8 * 256, max_wait_ms=0)
    big = [f"big-{i}" for i in range(200)]

    async def main():
        big_task = asyncio.create_task(batcher.encode(big, costs=[256] * 200))
        while not model.calls:  # the big request's first batch has run
            await asyncio.sleep(0.001)
        small = await batcher.encode(["small-0"], costs=[5])
        calls_when_small_done = len(model.calls)
        assert not big_task.done()
        return small, calls_when_small_done, await big_task

    small, calls_when_small_done, big_vectors = run(_closing(batcher, main()))
    assert small[:, 0].tolist() == [0.0]
    # It waited for the batch in flight, not behind 25 batches of the big one ...
    assert calls_when_small_done <= 3
    # ... and ran alone: 8 long texts beside it would have cost as much as 8 long texts.
    assert ["small-0"] in model.calls
    np.testing.assert_array_equal(big_vectors[:, 0], np.arange(200))


def test_a_stream_of_small_requests_does_not_starve_a_big_one():
    model = Model(seconds=0.01)
    batcher = Batcher(model, max_batch_size=64, max_batch_tokens=4 * 256, max_wait_ms=0)

    async def main():
        big = asyncio.create_task(batcher.encode([f"big-{i}" for i in range(40)], costs=[256] * 40))
        smalls = []
        for i in range(150):  # a new one-text request every 4 ms, for longer than big needs
            smalls.append(asyncio.create_task(batcher.encode([f"small-{i}"], costs=[5])))
            await asyncio.sleep(0.004)
        big_done_during_stream = big.done()
        await asyncio.gather(big, *smalls)
        return big_done_during_stream

    assert run(_closing(batcher, main())), "the big request waited for the stream to stop"
    big_calls = [i for i, c in enumerate(model.calls) if c[0].startswith("big")]
    small_calls = [i for i, c in enumerate(model.calls) if c[0].startswith("small")]
    assert small_calls[0] < big_calls[-1]  # the two kinds took turns


def test_each_waiting_request_gets_a_turn_in_every_batch():
    model = Model(seconds=0.01)
    batcher = Batcher(model, max_batch_size=6, max_wait_ms=50)

    async def main():
        return await asyncio.gather(
            batcher.encode([f"a-{i}" for i in range(30)]),
            batcher.encode([f"b-{i}" for i in range(30)]),
            batcher.encode([f"c-{i}" for i in range(3)]),
        )

    a, b, c = run(_closing(batcher, main()))
    first = model.calls[0]
    assert sorted(t[0] for t in first) == ["a", "a", "b", "b", "c", "c"]  # not 6 from "a"
    assert any("c-2" in call for call in model.calls[:2])  # c was done in the second batch
    np.testing.assert_array_equal(a[:, 0], np.arange(30))
    np.testing.assert_array_equal(c[:, 0], np.arange(3))


def test_batches_stay_within_the_padded_token_budget_and_results_keep_their_order():
    model = Model()
    batcher = Batcher(model, max_batch_size=64, max_batch_tokens=100, max_wait_ms=0)
    costs = [50, 5, 30, 10, 90, 20, 5, 60, 40, 10]
    texts = [f"t-{i}" for i in range(len(costs))]

    vectors = run(_closing(batcher, batcher.encode(texts, costs=costs)))

    np.testing.assert_array_equal(vectors[:, 0], np.arange(len(texts)))
    cost_of = dict(zip(texts, costs, strict=True))
    for call in model.calls:
        padded = len(call) * max(cost_of[t] for t in call)
        assert padded <= 100 or len(call) == 1, call
    # Shortest first: the first call holds the cheapest texts, so little of it is padding.
    assert set(model.calls[0]) == {"t-1", "t-6", "t-3", "t-9", "t-5"}  # 5 x 20 tokens


def test_the_model_throughput_is_measured_for_admission():
    model = Model(seconds=0.05)
    batcher = Batcher(model, max_batch_size=4, max_wait_ms=0)
    assert batcher.texts_per_s is None
    run(_closing(batcher, batcher.encode([f"t-{i}" for i in range(8)])))
    assert 10 < batcher.texts_per_s <= 4 / 0.05  # 4 texts per call of at least 0.05 s


def test_a_cancelled_request_leaves_the_queue_and_is_not_computed():
    model = Model(seconds=0.02)
    batcher = Batcher(model, max_batch_size=4, max_wait_ms=0)

    async def main():
        task = asyncio.create_task(batcher.encode([f"gone-{i}" for i in range(400)]))
        while len(model.calls) < 2:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        waiting_after = batcher.waiting
        after = await batcher.encode(["next-0"])  # the batcher still serves others
        return waiting_after, after

    waiting_after, after = run(_closing(batcher, main()))
    assert waiting_after == 0
    computed = sum(len(c) for c in model.calls if any(t.startswith("gone") for t in c))
    assert computed <= 16, f"{computed} of 400 texts were computed for a caller that had gone"
    assert after[:, 0].tolist() == [0.0]


def test_a_text_the_model_cannot_read_fails_only_its_own_request():
    model = Model()
    batcher = Batcher(model, max_batch_size=8, max_wait_ms=50)

    async def main():
        return await asyncio.gather(
            batcher.encode(["good-0", "good-1"]),
            batcher.encode(["boom-0"]),
            return_exceptions=True,
        )

    good, bad = run(_closing(batcher, main()))
    assert good[:, 0].tolist() == [0.0, 1.0]
    assert isinstance(bad, ValueError)


def test_closing_fails_waiting_requests_instead_of_leaving_them_hanging():
    model = Model(seconds=0.05)
    batcher = Batcher(model, max_batch_size=1, max_wait_ms=0)

    async def main():
        task = asyncio.create_task(batcher.encode([f"x-{i}" for i in range(50)]))
        await asyncio.sleep(0.01)
        await batcher.close()
        with pytest.raises(ShuttingDown):
            await asyncio.wait_for(task, 5)

    run(main())
    batcher.shutdown()
