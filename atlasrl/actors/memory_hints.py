"""MemoryAdvisor: what the actor asks of the skill memory, and what it gives back.

    advisor = MemoryAdvisor("127.0.0.1:50055", hints="text", max_skills=3, shaping=True)
    advice = await advisor.episode_start(spec, first_obs, group_id)   # one Query per GRPO group
    advice.text(obs), advice.hints(obs)                     # each turn: risk words, skills, overlay, exemplars
    advice.shape(obs, next_obs)                             # F = gamma*Phi(s') - Phi(s), computed locally
    advisor.ingest(episode)                                 # finished episode -> MemoryService.Ingest (background)
    await advisor.close()

Shaping uses the potential Phi frozen at the episode's start (the maps of that
one Query, ``atlasrl.clients.memory.EpisodeShaper``): the shaping terms of an
episode telescope exactly to gamma^T Phi(s_T) - Phi(s_0), which keeps the
optimal policy unchanged (Ng et al. 1999) even while the memory's maps move
with every ingested episode, and a turn costs no RPC. The episodes of one GRPO
group share one Query (``group_id``): group-relative advantages compare their
returns, and a Phi that moved between two members' starts would add its drift
to that comparison as noise (standardised to full size where the env returns tie).

The memory is advice, never a dependency: if the service is down or does not
know the family yet, hints are empty and shaping is 0 (counted in metrics), and
rollouts go on. Ingest runs in the background through a bounded queue; when the
queue is full the oldest episode is skipped (memory statistics tolerate gaps,
the learner's trajectories do not).
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass

import grpc
import numpy as np

from atlasrl.actors.episode import EpisodeBuffer
from atlasrl.actors.memory_view import TurnView, egocentric_radius
from atlasrl.actors.prompts import MemoryHints
from atlasrl.clients.memory import EpisodeShaper, MemoryClient, decode_view
from atlasrl.log import ReasonSummary
from atlasrl.rpc.errors import code_name
from atlasrl.rpc.retry import Backoff
from atlasrl.v1 import env_pb2, memory_pb2

log = logging.getLogger("atlasrl.actors.memory")
GROUPS_REMEMBERED = 4096   # far more groups than run side by side; a group's members start within a few turns


def _goal(obs: env_pb2.Observation) -> env_pb2.GridCoord | None:
    for e in obs.entities:
        if e.kind == "goal":
            return e.cell
    for e in obs.entities:
        if e.kind == "target":
            return e.cell
    return None


@dataclass
class EpisodeAdvice:
    """What the memory said at an episode's start: its view for the prompts and the episode's frozen shaper."""

    view: TurnView | None = None
    shaper: EpisodeShaper | None = None

    def text(self, obs: env_pb2.Observation) -> str:
        """This turn's observation text, with the memory's risk words when that channel is on."""
        return self.view.annotate(obs) if self.view is not None else obs.text

    def hints(self, obs: env_pb2.Observation) -> MemoryHints | None:
        """This turn's memory hints (skills, the overlay around the agent's cell, exemplars); None without."""
        return self.view.hints(obs) if self.view is not None else None

    def shape(self, obs: env_pb2.Observation, next_obs: env_pb2.Observation, *, last: bool = False) -> float:
        """Shaping of the turn that led from ``obs`` to ``next_obs`` (0 without a shaper or grid cells). ``last``:
        this turn ends the episode although the env did not say so (the actor's turn cap): like a terminal
        state, its potential counts 0, so the episode's shaping still telescopes to -Phi(s_0)."""
        if self.shaper is None or not (obs.HasField("agent") and next_obs.HasField("agent")):
            return 0.0
        try:
            return self.shaper((obs.agent.row, obs.agent.col), (next_obs.agent.row, next_obs.agent.col),
                               terminal=last or next_obs.terminated or next_obs.truncated)
        except ValueError:   # a cell outside the atlas grid (env and memory disagree on the grid)
            return 0.0


class MemoryAdvisor:
    def __init__(self, address: str, *, hints: str = "text", max_skills: int = 3, shaping: bool = True,
                 risk: bool = False, exemplars: int = 0, source: str = "memory", timeout_s: float = 2.0,
                 ingest_queue: int = 256, ingest_batch: int = 16, on_miss=None, blend: bool = False,
                 danger_only: bool = False):
        self.address = address
        self.hint_mode = hints
        self.blend = blend       # ActorConfig.memory_overlay == "blend"
        self.danger_only = danger_only   # ActorConfig.memory_overlay_maps == "danger": the overlay without affinity
        self.risk = risk
        self.exemplars = exemplars
        self.source = source     # memory | placebo | oracle (ActorConfig.memory_source)
        self._layouts: OrderedDict[tuple[str, str], None] = OrderedDict()   # (family, layout_key) seen, newest last
        self.misses = 0          # queries that failed: the episode went on with an empty view
        self._on_miss = on_miss  # e.g. the actor's memory-miss counter
        self._rejections = ReasonSummary(log, "memory rejected episodes")   # a flood is one line per interval
        self.max_skills = max_skills
        self.shaping = shaping
        self.timeout_s = timeout_s
        self._client = MemoryClient(address, timeout_s=timeout_s)
        self._stub = self._client.stub
        self._queue: asyncio.Queue[memory_pb2.EpisodeRecord] = asyncio.Queue(ingest_queue)
        self._ingest_batch = ingest_batch
        self._ingester: asyncio.Task | None = None
        self.failures = 0
        self.ingested = 0
        self.skipped = 0
        self._groups: OrderedDict[str, asyncio.Future[EpisodeAdvice]] = OrderedDict()

    async def episode_start(self, spec: env_pb2.EnvSpec, obs: env_pb2.Observation, group_id: str = "") -> EpisodeAdvice:
        """The new episode's hints and (when shaping) its frozen potential: one Query per group (per episode
        without a ``group_id``), so that every member of a group is shaped with the same Phi."""
        if not self.wants_view and not self.shaping:
            return EpisodeAdvice()
        if not group_id:
            return await self._query(spec, obs)
        advice = self._groups.get(group_id)
        if advice is None:
            advice = self._groups[group_id] = asyncio.ensure_future(self._query(spec, obs))
            while len(self._groups) > GROUPS_REMEMBERED:
                self._groups.popitem(last=False)
        return await asyncio.shield(advice)

    @classmethod
    def from_config(cls, cfg, on_miss=None) -> MemoryAdvisor:
        """The advisor an ActorConfig asks for (cfg.memory is its address)."""
        return cls(cfg.memory, hints=cfg.memory_hints, max_skills=cfg.memory_skills, shaping=cfg.memory_shaping,
                   risk=cfg.memory_risk, exemplars=cfg.memory_exemplars, source=cfg.memory_source, on_miss=on_miss,
                   blend=cfg.memory_overlay == "blend", danger_only=cfg.memory_overlay_maps == "danger")

    @property
    def wants_view(self) -> bool:
        return self.hint_mode != "none" or self.risk or self.exemplars > 0

    def _placebo_layout(self, family: str, layout_key: str) -> str | None:
        """Another layout of the family this actor has played, the most recent one (None: none yet)."""
        self._layouts.pop((family, layout_key), None)
        other = next((k for f, k in reversed(self._layouts) if f == family), None)
        self._layouts[(family, layout_key)] = None
        while len(self._layouts) > GROUPS_REMEMBERED:
            self._layouts.popitem(last=False)
        return other

    def _oracle(self, spec: env_pb2.EnvSpec, obs: env_pb2.Observation, shaper) -> EpisodeAdvice:
        """The true hazard map from the observation's hole entities (env oracle_holes), with the same channels."""
        danger = np.zeros((max(spec.grid_rows, 1), max(spec.grid_cols, 1)), np.float32)
        for e in obs.entities:
            if e.kind == "hole" and e.cell.row < danger.shape[0] and e.cell.col < danger.shape[1]:
                danger[e.cell.row, e.cell.col] = 1.0
        view = TurnView(danger, np.zeros_like(danger), risk=self.risk, overlay=self.hint_mode in ("overlay", "both"),
                        window=egocentric_radius(spec), blend=self.blend)
        return EpisodeAdvice(view=view, shaper=shaper)

    async def _query(self, spec: env_pb2.EnvSpec, obs: env_pb2.Observation) -> EpisodeAdvice:
        if self.source == "oracle":
            advice = await self._query_service(spec, obs, obs.layout_key) if self.shaping else EpisodeAdvice()
            return self._oracle(spec, obs, advice.shaper)
        layout_key = obs.layout_key
        if self.source == "placebo":
            other = self._placebo_layout(spec.family, obs.layout_key)
            if other is None:                       # no other layout yet: no view rather than the true one
                advice = await self._query_service(spec, obs, obs.layout_key) if self.shaping else EpisodeAdvice()
                return EpisodeAdvice(shaper=advice.shaper)
            shaping = await self._query_service(spec, obs, obs.layout_key) if self.shaping else EpisodeAdvice()
            view = await self._query_service(spec, obs, other)
            return EpisodeAdvice(view=view.view, shaper=shaping.shaper)
        return await self._query_service(spec, obs, layout_key)

    async def _query_service(self, spec: env_pb2.EnvSpec, obs: env_pb2.Observation, layout_key: str) -> EpisodeAdvice:
        goal = _goal(obs)
        overlay = self.hint_mode in ("overlay", "both")
        # The overlay is drawn here each turn from the frozen maps (memory_view.py), not by the service once.
        q = memory_pb2.MemoryQuery(
            family=spec.family, layout_key=layout_key, grid_rows=spec.grid_rows, grid_cols=spec.grid_cols,
            agent=obs.agent, has_agent=obs.HasField("agent"), include_overlay=False, top_k=self.exemplars,
        )
        if goal is not None:
            q.goal.CopyFrom(goal)
            q.has_goal = True
        if self.exemplars and obs.images:
            q.frame.CopyFrom(obs.images[0])      # what the exemplars are ranked by similarity to
        try:
            raw = await self._stub.Query(q, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:  # NOT_FOUND: the family is new to the memory
                self.failures += 1
                self.misses += 1
                if self._on_miss is not None:
                    self._on_miss()
                log.debug("memory query failed: %s", e.details())
            return EpisodeAdvice()
        if not (raw.HasField("danger") and raw.HasField("affinity")):
            return EpisodeAdvice()
        maps = decode_view(raw)
        advice = EpisodeAdvice()
        if self.wants_view:
            exemplars = [(e["image"], f"{e['outcome']}" + (f" ({e['cause']})" if e["cause"] else "")
                          + (f": {e['caption']}" if e["caption"] else "")) for e in maps.exemplars[: self.exemplars]]
            affinity = np.zeros_like(maps.affinity) if self.danger_only else maps.affinity
            advice.view = TurnView(maps.danger, affinity, exemplars=exemplars, risk=self.risk, overlay=overlay,
                                   window=egocentric_radius(spec), blend=self.blend,
                                   skills=[s.text for s in raw.skills[: self.max_skills]]
                                   if self.hint_mode in ("text", "both") else [])
        if self.shaping:
            advice.shaper = maps.shaper()
        return advice

    def ingest(self, episode: EpisodeBuffer) -> None:
        if self._ingester is None:
            self._ingester = asyncio.create_task(self._ingest_forever())
        if self._queue.full():
            self._queue.get_nowait()
            self.skipped += 1
        self._queue.put_nowait(episode.to_memory_record())

    async def _ingest_forever(self) -> None:
        backoff = Backoff(0.5, 5.0)
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < self._ingest_batch:
                batch.append(self._queue.get_nowait())
            try:
                summary = await self._stub.Ingest(iter(batch), timeout=30)
                self.ingested += summary.accepted + summary.duplicates
                for r in summary.rejected:
                    self._rejections.add(code_name(r.status.code), f"episode {r.episode_id}: {r.status.message}")
                backoff.reset()
            except grpc.aio.AioRpcError as e:
                self.failures += 1
                self.skipped += len(batch)
                log.info("memory ingest failed (%s); %d episodes skipped", e.code().name, len(batch))
                await backoff.sleep()

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
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing: whatever the cancelled task ended with is not our error
                pass
        self._rejections.flush()
        await self._client.close()
