"""MemoryAdvisor: what the actor asks of the skill memory, and what it gives back.

    advisor = MemoryAdvisor("127.0.0.1:50055", hints="text", max_skills=3)
    hints = await advisor.hints(spec, first_obs)          # text skills and/or the atlas overlay
    shaping = await advisor.shape([(episode, next_obs)])  # F = gamma*Phi(s') - Phi(s) per transition
    advisor.ingest(episode)                               # finished episode -> MemoryService.Ingest (background)
    await advisor.close()

The memory is advice, never a dependency: if the service is down or does not
know the family yet, hints are empty and shaping is 0 (counted in metrics), and
rollouts go on. Ingest runs in the background through a bounded queue; when the
queue is full the oldest episode is skipped (memory statistics tolerate gaps,
the learner's trajectories do not).
"""
from __future__ import annotations

import asyncio
import logging

import grpc

from atlasrl.actors.episode import EpisodeBuffer
from atlasrl.actors.prompts import MemoryHints
from atlasrl.rpc import make_channel
from atlasrl.v1 import env_pb2, memory_pb2, memory_pb2_grpc

log = logging.getLogger("atlasrl.actors.memory")


def _goal(obs: env_pb2.Observation) -> env_pb2.GridCoord | None:
    for e in obs.entities:
        if e.kind == "goal":
            return e.cell
    for e in obs.entities:
        if e.kind == "target":
            return e.cell
    return None


class MemoryAdvisor:
    def __init__(self, address: str, *, hints: str = "text", max_skills: int = 3, timeout_s: float = 2.0,
                 ingest_queue: int = 256, ingest_batch: int = 16):
        self.address = address
        self.hint_mode = hints
        self.max_skills = max_skills
        self.timeout_s = timeout_s
        self._channel = make_channel(address)
        self._stub = memory_pb2_grpc.MemoryServiceStub(self._channel)
        self._queue: asyncio.Queue[memory_pb2.EpisodeRecord] = asyncio.Queue(ingest_queue)
        self._ingest_batch = ingest_batch
        self._ingester: asyncio.Task | None = None
        self.failures = 0
        self.ingested = 0
        self.skipped = 0

    async def hints(self, spec: env_pb2.EnvSpec, obs: env_pb2.Observation) -> MemoryHints | None:
        if self.hint_mode == "none":
            return None
        goal = _goal(obs)
        want_overlay = self.hint_mode in ("overlay", "both")
        q = memory_pb2.MemoryQuery(
            family=spec.family, layout_key=obs.layout_key, grid_rows=spec.grid_rows, grid_cols=spec.grid_cols,
            agent=obs.agent, has_agent=obs.HasField("agent"), include_overlay=want_overlay,
        )
        if goal is not None:
            q.goal.CopyFrom(goal)
            q.has_goal = True
        if want_overlay and obs.images:
            q.frame.CopyFrom(obs.images[0])
        try:
            view = await self._stub.Query(q, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:  # NOT_FOUND: the family is new to the memory
                self.failures += 1
                log.debug("memory query failed: %s", e.details())
            return None
        out = MemoryHints()
        if self.hint_mode in ("text", "both"):
            out.skills = [s.text for s in view.skills[: self.max_skills]]
        if want_overlay and view.HasField("overlay") and view.overlay.data:
            out.overlay = view.overlay
        return out

    async def shape(self, transitions: list[tuple[EpisodeBuffer, env_pb2.Observation]]) -> list[float]:
        """Shaping term per (episode, observation after its latest action)."""
        batch = memory_pb2.ShapeBatch()
        for ep, nxt in transitions:
            prev = ep.last_obs
            t = batch.transitions.add(
                family=ep.spec.family, layout_key=ep.first_obs.layout_key, grid_rows=ep.spec.grid_rows,
                grid_cols=ep.spec.grid_cols, cell=prev.agent, next_cell=nxt.agent,
                terminal=nxt.terminated or nxt.truncated,
            )
            goal = _goal(ep.first_obs)
            if goal is not None:
                t.goal.CopyFrom(goal)
                t.has_goal = True
        try:
            res = await self._stub.Shape(batch, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                self.failures += 1
                log.debug("memory shape failed: %s", e.details())
            return [0.0] * len(transitions)
        if len(res.shaping) != len(transitions):
            self.failures += 1
            return [0.0] * len(transitions)
        return [float(x) for x in res.shaping]

    def ingest(self, episode: EpisodeBuffer) -> None:
        if self._ingester is None:
            self._ingester = asyncio.create_task(self._ingest_forever())
        if self._queue.full():
            self._queue.get_nowait()
            self.skipped += 1
        self._queue.put_nowait(episode.to_memory_record())

    async def _ingest_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < self._ingest_batch:
                batch.append(self._queue.get_nowait())
            try:
                summary = await self._stub.Ingest(iter(batch), timeout=30)
                self.ingested += summary.accepted + summary.duplicates
                for r in summary.rejected:
                    log.warning("memory rejected episode %s: %s", r.episode_id, r.status.message)
            except grpc.aio.AioRpcError as e:
                self.failures += 1
                self.skipped += len(batch)
                log.info("memory ingest failed (%s); %d episodes skipped", e.code().name, len(batch))
                await asyncio.sleep(1.0)

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until the ingest queue drained (tests, shutdown)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._queue.empty() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._ingester is not None:
            self._ingester.cancel()
            try:
                await self._ingester
            except (asyncio.CancelledError, Exception):
                pass
        await self._channel.close()
