"""Dynamic micro-batching: concurrent requests' images run as one inference call.

Each image is queued with a future. A single worker task takes the first waiting image and gathers
more until ``max_batch``, until ``max_wait`` has passed, or until no other image is on its way (being
decoded: see ``incoming``; a lone request is not kept waiting for company). It runs the batch in a
one-thread executor (the event loop never blocks; the backend's own threads do the work) and hands
each request its row.
The number of images in the server (waiting, gathered or running) is bounded: beyond ``max_queue``
a request is refused at once (the app answers 503 with Retry-After) instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class QueueFullError(RuntimeError):
    pass


class MicroBatcher:
    def __init__(self, run_batch: Callable[[np.ndarray], np.ndarray], max_batch: int, max_wait_s: float,
                 max_queue: int, on_batch: Callable[[int, float], None] | None = None) -> None:
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="reslab-infer")
        self.task: asyncio.Task | None = None
        self.pending = 0  # images submitted and not yet answered
        self.expected = 0  # images being decoded, to be submitted soon
        self.wakeup = asyncio.Event()

    @property
    def depth(self) -> int:
        return self.pending

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        while self.pending:
            await asyncio.sleep(0.01)
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.executor.shutdown(wait=True)

    @contextlib.contextmanager
    def incoming(self) -> Iterator[None]:
        """Around the decoding of an image that will be submitted: the gathering batch waits for it."""
        self.expected += 1
        try:
            yield
        finally:
            self.expected -= 1
            self.wakeup.set()

    async def submit(self, image: np.ndarray) -> np.ndarray:
        """The model's output row for one preprocessed image (C, H, W)."""
        if self.pending >= self.max_queue:
            raise QueueFullError(f"{self.pending} images are already waiting for inference (--max-queue "
                                 f"{self.max_queue}); retry shortly")
        future = asyncio.get_running_loop().create_future()
        self.pending += 1
        self.queue.put_nowait((image, future))
        self.wakeup.set()
        try:
            return await future
        finally:
            self.pending -= 1

    async def _gather(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        items = [await self.queue.get()]
        deadline = time.monotonic() + self.max_wait_s
        while len(items) < self.max_batch:
            if not self.queue.empty():
                items.append(self.queue.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if self.expected == 0 or remaining <= 0:
                break
            self.wakeup.clear()
            try:
                await asyncio.wait_for(self.wakeup.wait(), remaining)
            except asyncio.TimeoutError:  # noqa: UP041 (not the builtin before Python 3.11)
                break
        return [(x, f) for x, f in items if not f.cancelled()]  # a request that timed out is dropped

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._gather()
            if not items:
                continue
            batch = np.stack([x for x, _ in items])
            start = time.perf_counter()
            try:
                outputs = await loop.run_in_executor(self.executor, self.run_batch, batch)
            except Exception as e:  # the backend failed: every request of the batch hears why
                for _, future in items:
                    if not future.done():
                        future.set_exception(e)
                continue
            if self.on_batch:
                self.on_batch(len(items), time.perf_counter() - start)
            for (_, future), row in zip(items, outputs):
                if not future.done():
                    future.set_result(row)
