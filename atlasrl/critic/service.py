"""CriticService servicer: validate frames and task text, batch them across actors, answer with scores.

Input checks run before anything is queued, so a bad request is INVALID_ARGUMENT naming the field
(``frames[3].image``, ``task``, ``frames``) and never reaches the model; the service keeps serving the others.
"""
from __future__ import annotations

import time

import numpy as np

from atlasrl import codec
from atlasrl.critic.backends import Backend, Item
from atlasrl.critic.batcher import Batcher
from atlasrl.critic.config import CriticConfig
from atlasrl.metrics import Metrics
from atlasrl.rpc.errors import InvalidArgument
from atlasrl.v1 import critic_pb2


class CriticServicer:
    def __init__(self, cfg: CriticConfig, backend: Backend, batcher: Batcher, metrics: Metrics):
        self.cfg = cfg
        self.backend = backend
        self.batcher = batcher
        self.m_frames = metrics.counter("critic_frames_scored", "Frames scored", ["backend"])
        self.m_batch = metrics.histogram("critic_batch_frames", "Frames per model call",
                                         buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
        self.m_model = metrics.histogram("critic_model_seconds", "Time of one model call")
        self.m_rejected = metrics.counter("critic_rejected", "Requests refused, by field", ["field"])
        batcher.on_batch = self._on_batch
        self.requests_total = 0

    def _on_batch(self, n: int, seconds: float) -> None:
        self.m_frames.labels(self.backend.name).inc(n)
        self.m_batch.observe(n)
        self.m_model.observe(seconds)

    # -- checks ------------------------------------------------------------------
    def _reject(self, field: str, message: str) -> InvalidArgument:
        self.m_rejected.labels(field).inc()
        return InvalidArgument(f"{field}: {message}")

    def _task(self, task: str, field: str = "task") -> str:
        if len(task) > self.cfg.limits.max_task_chars:
            raise self._reject(field, f"{len(task)} characters exceed the limit of {self.cfg.limits.max_task_chars}")
        return task

    def _frame(self, frame: critic_pb2.Frame, field: str) -> Item:
        t = frame.image
        if not frame.HasField("image"):
            raise self._reject(f"{field}.image", "missing")
        if t.dtype != codec.wire_dtype(np.dtype(np.uint8)):
            raise self._reject(f"{field}.image", f"dtype must be DTYPE_UINT8 (RGB), got {t.dtype}")
        if len(t.shape) != 3 or t.shape[2] != 3 or min(t.shape[:2], default=0) < 1:
            raise self._reject(f"{field}.image", f"shape must be (H, W, 3), got {list(t.shape)}")
        side = self.cfg.limits.max_side
        if max(t.shape[0], t.shape[1]) > side:
            raise self._reject(f"{field}.image", f"shape {list(t.shape)} exceeds max_side {side}")
        try:
            image = codec.decode(t, max_bytes=side * side * 3)
        except codec.CodecError as e:
            raise self._reject(f"{field}.image", f"malformed tensor: {e}") from None
        if self.backend.needs_oracle and not frame.HasField("oracle"):
            raise self._reject(f"{field}.oracle", "the oracle backend needs the simulator state with every frame")
        return Item(task="", image=image, oracle=frame.oracle if frame.HasField("oracle") else None)

    # -- RPCs --------------------------------------------------------------------
    async def Score(self, requests, context) -> critic_pb2.ScoreResponse:
        task = ""
        items: list[Item] = []
        last_only = False
        limit = self.cfg.limits.max_frames_per_request
        async for req in requests:
            if req.task:
                task = self._task(req.task)
            last_only = last_only or req.last_only
            for f in req.frames:
                if len(items) >= limit:
                    raise self._reject("frames", f"more than max_frames_per_request ({limit}) frames in one stream")
                items.append(self._frame(f, f"frames[{len(items)}]"))
        if not items:
            raise self._reject("frames", "empty Score stream: send at least one frame")
        for it in items:
            it.task = task
        if last_only:
            ref = items[0].image
            items = items[-1:]
            if self.backend.pairwise:
                items[0].reference = ref
        elif self.backend.pairwise:
            for it in items:
                it.reference = items[0].image
        self.requests_total += 1
        scores, info = await self.batcher.submit(items)
        return critic_pb2.ScoreResponse(
            scores=[critic_pb2.FrameScore(progress=s.progress, done_probability=s.done_probability) for s in scores],
            batch_size=info.largest_batch, queue_ms=info.queue_ms, model_ms=info.model_ms, backend=self.backend.name)

    async def Compare(self, request: critic_pb2.CompareRequest, context) -> critic_pb2.CompareResponse:
        import asyncio

        task = self._task(request.task)
        a, b = self._frame(request.a, "a"), self._frame(request.b, "b")
        a.task = b.task = task
        t0 = time.perf_counter()
        delta = await asyncio.to_thread(self.backend.compare, task, a, b)
        self.m_model.observe(time.perf_counter() - t0)
        return critic_pb2.CompareResponse(delta=float(delta))

    async def Info(self, request, context) -> critic_pb2.CriticInfo:
        lim = self.cfg.limits
        return critic_pb2.CriticInfo(
            backend=self.backend.name, model=self.backend.model, max_side=lim.max_side,
            max_task_chars=lim.max_task_chars, max_frames_per_request=lim.max_frames_per_request,
            max_batch=self.cfg.max_batch, max_wait_ms=self.cfg.max_wait_ms, frames_scored=self.batcher.frames,
            batches=self.batcher.batches, device=self.backend.device, pairwise=self.backend.pairwise)
