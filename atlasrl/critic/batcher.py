"""Batch frames of concurrent requests (every actor's) into one backend call.

    batcher = Batcher(backend, max_batch=64, max_wait_ms=2.0)
    batcher.start()
    scores, info = await batcher.submit(items)     # from any request handler
    await batcher.stop()

One worker task takes the first waiting item, then collects more until ``max_batch`` items or ``max_wait_ms``
have passed, and runs ``backend.score`` on them in a thread (the model call must not block the event loop that
reads other actors' requests meanwhile). A request's items may be split over consecutive batches.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from atlasrl.critic.backends import Backend, Item, Score


@dataclass
class BatchInfo:
    largest_batch: int = 0
    queue_ms: float = 0.0
    model_ms: float = 0.0


@dataclass
class _Pending:
    item: Item
    future: asyncio.Future
    t_in: float


class Batcher:
    def __init__(self, backend: Backend, *, max_batch: int, max_wait_ms: float, on_batch=None):
        self.backend = backend
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.on_batch = on_batch          # on_batch(n_items, seconds) after every model call (metrics)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self.frames = 0
        self.batches = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def submit(self, items: Sequence[Item]) -> tuple[list[Score], BatchInfo]:
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        pending = [_Pending(it, loop.create_future(), now) for it in items]
        for p in pending:
            self._queue.put_nowait(p)
        results = await asyncio.gather(*(p.future for p in pending))
        info = BatchInfo()
        for _, b in results:
            info.largest_batch = max(info.largest_batch, b.largest_batch)
            info.queue_ms = max(info.queue_ms, b.queue_ms)
            info.model_ms = max(info.model_ms, b.model_ms)
        return [s for s, _ in results], info

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            deadline = time.perf_counter() + self.max_wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
            live = [p for p in batch if not p.future.done()]    # a cancelled request's items are skipped
            if not live:
                continue
            t0 = time.perf_counter()
            try:
                scores = await asyncio.to_thread(self.backend.score, [p.item for p in live])
            except Exception as e:  # noqa: BLE001 - the error goes to every request of the batch
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(e)
                continue
            t1 = time.perf_counter()
            self.frames += len(live)
            self.batches += 1
            if self.on_batch:
                self.on_batch(len(live), t1 - t0)
            for p, s in zip(live, scores):
                if not p.future.done():
                    p.future.set_result((s, BatchInfo(len(live), (t0 - p.t_in) * 1e3, (t1 - t0) * 1e3)))
