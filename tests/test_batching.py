"""The micro-batcher and the answer cache on their own (asyncio, no server)."""

import asyncio

import numpy as np
import pytest

from reslab.serve.batching import MicroBatcher, QueueFullError
from reslab.serve.cache import AnswerCache, content_key


def doubling_batcher(calls: list[int], **options) -> MicroBatcher:
    def run(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return batch * 2

    return MicroBatcher(run, **{"max_batch": 4, "max_wait_s": 0.2, "max_queue": 100, **options})


def test_concurrent_images_share_calls_and_each_gets_its_own_row():
    async def scenario():
        calls: list[int] = []
        batcher = doubling_batcher(calls)
        batcher.start()
        images = [np.full((1, 2, 2), i, np.float32) for i in range(10)]
        rows = await asyncio.gather(*(batcher.submit(x) for x in images))  # all queued before the worker runs
        await batcher.stop()
        return calls, rows

    calls, rows = asyncio.run(scenario())
    assert sum(calls) == 10 and max(calls) <= 4 and len(calls) == 3  # 4 + 4 + 2
    for i, row in enumerate(rows):
        assert row.shape == (1, 2, 2) and float(row.flat[0]) == 2 * i


def test_a_lone_request_does_not_wait_for_company():
    async def scenario():
        batcher = doubling_batcher([], max_wait_s=5.0)
        batcher.start()
        loop = asyncio.get_running_loop()
        start = loop.time()
        await batcher.submit(np.zeros((1, 1, 1), np.float32))
        elapsed = loop.time() - start
        await batcher.stop()
        return elapsed

    assert asyncio.run(scenario()) < 1.0  # far below max_wait_s: nothing else was on its way


def test_a_batch_waits_for_an_image_still_being_decoded():
    async def scenario():
        calls: list[int] = []
        batcher = doubling_batcher(calls, max_wait_s=2.0)
        batcher.start()

        async def late():
            with batcher.incoming():
                await asyncio.sleep(0.1)  # "decoding"
            return await batcher.submit(np.ones((1, 1, 1), np.float32))

        rows = await asyncio.gather(batcher.submit(np.zeros((1, 1, 1), np.float32)), late())
        await batcher.stop()
        return calls, rows

    calls, rows = asyncio.run(scenario())
    assert calls == [2] and [float(r.flat[0]) for r in rows] == [0.0, 2.0]


def test_a_full_queue_refuses_and_a_failing_backend_fails_its_batch():
    async def scenario():
        def failing(batch):
            raise RuntimeError("backend exploded")

        batcher = MicroBatcher(failing, max_batch=8, max_wait_s=0.05, max_queue=2)
        batcher.start()
        first = [asyncio.ensure_future(batcher.submit(np.zeros(1, np.float32))) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError, match="max-queue 2"):
            await batcher.submit(np.zeros(1, np.float32))
        results = await asyncio.gather(*first, return_exceptions=True)
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert all(isinstance(r, RuntimeError) and "exploded" in str(r) for r in results)


def test_cache_is_a_bounded_lru():
    cache = AnswerCache(2)
    a, b, c = (content_key(x) for x in (b"a", b"b", b"c"))
    cache.put(a, np.array([1.0]))
    cache.put(b, np.array([2.0]))
    assert cache.get(a) is not None  # a is now the most recent
    cache.put(c, np.array([3.0]))  # evicts b, the least recent
    assert cache.get(b) is None and float(cache.get(a)[0]) == 1.0 and float(cache.get(c)[0]) == 3.0
    off = AnswerCache(0)
    off.put(a, np.array([1.0]))
    assert off.get(a) is None
