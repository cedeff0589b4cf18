"""Client of the skill memory (MemoryService), async and sync.

    async with MemoryClient("127.0.0.1:50055") as mem:
        summary = await mem.ingest([episode_record("frozenlake", "8x8-s3", 8, 8, cells, success=False, cause="hole",
                                                   goal=(7, 7))])
        view = await mem.query("frozenlake", "8x8-s3", frame=frame, agent=(0, 1), top_k=4, overlay=True)
        view.danger, view.affinity          # float32 (rows, cols) in [0, 1]
        shaped = await mem.shape([transition("frozenlake", "8x8-s3", (0, 0), (0, 1))])
        shaped.shaping                      # F = gamma * Phi(s') - Phi(s), one per transition
        shaper = view.shaper(); shaper(cell, next_cell, terminal)   # or: Phi frozen for an episode, local

    mem = SyncMemoryClient("127.0.0.1:50055")   # same methods, blocking (scripts, benches, threads)

Errors are ``grpc.RpcError`` with the server's status (INVALID_ARGUMENT,
NOT_FOUND for an unknown family, ...). Shape a whole trajectory in one batch so
every term uses the same memory version (exact telescoping).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from atlasrl import codec
from atlasrl.rpc import ChannelConfig, make_channel
from atlasrl.v1 import env_pb2, memory_pb2, memory_pb2_grpc

Cell = tuple[int, int]
SOURCE_NAMES = {memory_pb2.ATLAS_SOURCE_LAYOUT: "layout", memory_pb2.ATLAS_SOURCE_BLENDED: "blended",
                memory_pb2.ATLAS_SOURCE_FAMILY: "family", memory_pb2.ATLAS_SOURCE_EMPTY: "empty"}


def _coord(cell: Cell) -> env_pb2.GridCoord:
    return env_pb2.GridCoord(row=int(cell[0]), col=int(cell[1]))


def episode_record(family: str, layout_key: str, rows: int, cols: int, cells: Iterable[Cell], *, success: bool,
                   cause: str = "", goal: Cell | None = None, entities: Iterable[tuple[str, Cell]] = (),
                   frames: Iterable[tuple[int, np.ndarray]] = (), episode_id: str = "", truncated: bool = False,
                   final_entities: Iterable[tuple[str, Cell]] = ()) -> memory_pb2.EpisodeRecord:
    """Build an EpisodeRecord from plain values: agent cells of s_0..s_T, static entities, key frames."""
    rec = memory_pb2.EpisodeRecord(episode_id=episode_id, family=family, layout_key=layout_key, grid_rows=rows,
                                   grid_cols=cols, success=success, terminal_cause=cause, truncated=truncated)
    for cell in cells:
        rec.steps.add(agent=_coord(cell))
    if final_entities and rec.steps:
        for kind, cell in final_entities:
            rec.steps[-1].entities.add(kind=kind, cell=_coord(cell))
    if goal is not None:
        rec.entities.add(kind="goal", cell=_coord(goal))
    for kind, cell in entities:
        rec.entities.add(kind=kind, cell=_coord(cell))
    for step, frame in frames:
        rec.key_frames.add(step=step, image=codec.encode(np.asarray(frame, np.uint8), "frame"))
    return rec


def transition(family: str, layout_key: str, cell: Cell, next_cell: Cell, *, terminal: bool = False,
               rows: int = 0, cols: int = 0, goal: Cell | None = None) -> memory_pb2.ShapeTransition:
    t = memory_pb2.ShapeTransition(family=family, layout_key=layout_key, grid_rows=rows, grid_cols=cols,
                                   cell=_coord(cell), next_cell=_coord(next_cell), terminal=terminal)
    if goal is not None:
        t.goal.CopyFrom(_coord(goal))
        t.has_goal = True
    return t


def trajectory_transitions(family: str, layout_key: str, cells: list[Cell], *, terminal_end: bool = True,
                           **kw) -> list[memory_pb2.ShapeTransition]:
    """Transitions s_t -> s_{t+1} of one trajectory; the last is terminal when the episode ended there."""
    n = len(cells) - 1
    return [transition(family, layout_key, cells[t], cells[t + 1], terminal=terminal_end and t == n - 1, **kw)
            for t in range(n)]


def query_request(family: str, layout_key: str, *, rows: int = 0, cols: int = 0, goal: Cell | None = None,
                  frame: np.ndarray | None = None, agent: Cell | None = None, top_k: int = 0,
                  overlay: bool = False) -> memory_pb2.MemoryQuery:
    q = memory_pb2.MemoryQuery(family=family, layout_key=layout_key, grid_rows=rows, grid_cols=cols, top_k=top_k,
                               include_overlay=overlay)
    if goal is not None:
        q.goal.CopyFrom(_coord(goal))
        q.has_goal = True
    if agent is not None:
        q.agent.CopyFrom(_coord(agent))
        q.has_agent = True
    if frame is not None:
        q.frame.CopyFrom(codec.encode(np.asarray(frame, np.uint8), "frame"))
    return q


@dataclass
class View:
    """A decoded MemoryView."""

    danger: np.ndarray
    affinity: np.ndarray
    overlay: np.ndarray | None
    exemplars: list[dict] = field(default_factory=list)   # image, caption, outcome, cause, similarity, layout_key
    skills: list[memory_pb2.TextSkill] = field(default_factory=list)
    source: str = "empty"
    layout_version: int = 0
    family_version: int = 0
    memory_version: int = 0
    raw: memory_pb2.MemoryView | None = None

    def shaper(self, gamma: float | None = None) -> EpisodeShaper:
        """Fixed-potential shaper from these maps (see EpisodeShaper)."""
        raw = self.raw or memory_pb2.MemoryView()
        return EpisodeShaper(self.danger, self.affinity, raw.lambda_affinity, raw.lambda_danger,
                             gamma if gamma is not None else (raw.gamma or 0.99))


class EpisodeShaper:
    """Shape one episode locally with Phi frozen at its start: exact telescoping, no RPC per step.

        shaper = (await mem.query(family, layout, rows=8, cols=8, goal=goal)).shaper()
        r_t += shaper(cell, next_cell, terminal)      # F = gamma * Phi(s') - Phi(s), Phi(terminal) = 0

    Server-side Shape uses the memory's current maps, which move as episodes arrive;
    freezing them per episode keeps sum_t gamma^t F_t = gamma^T Phi(s_T) - Phi(s_0).
    """

    def __init__(self, danger: np.ndarray, affinity: np.ndarray, lambda_affinity: float, lambda_danger: float,
                 gamma: float):
        self.phi = lambda_affinity * affinity.astype(np.float64) - lambda_danger * danger.astype(np.float64)
        self.gamma = gamma

    def potential(self, cell: Cell) -> float:
        r, c = int(cell[0]), int(cell[1])
        if not (0 <= r < self.phi.shape[0] and 0 <= c < self.phi.shape[1]):
            raise ValueError(f"cell ({r},{c}) is outside the {self.phi.shape[0]}x{self.phi.shape[1]} grid")
        return float(self.phi[r, c])

    def __call__(self, cell: Cell, next_cell: Cell, terminal: bool = False) -> float:
        return self.gamma * (0.0 if terminal else self.potential(next_cell)) - self.potential(cell)


def decode_view(v: memory_pb2.MemoryView) -> View:
    return View(
        danger=codec.decode(v.danger).astype(np.float32), affinity=codec.decode(v.affinity).astype(np.float32),
        overlay=codec.decode(v.overlay) if v.HasField("overlay") else None,
        exemplars=[{"image": codec.decode(e.image), "caption": e.caption,
                    "outcome": "success" if e.outcome == memory_pb2.EXEMPLAR_OUTCOME_SUCCESS else "failure",
                    "cause": e.terminal_cause, "similarity": e.similarity, "layout_key": e.layout_key}
                   for e in v.exemplars],
        skills=list(v.skills), source=SOURCE_NAMES.get(v.source, "empty"), layout_version=v.layout_version,
        family_version=v.family_version, memory_version=v.memory_version, raw=v)


class MemoryClient:
    """Async client (grpc.aio)."""

    def __init__(self, address: str, timeout_s: float = 30.0, *, channel_config: ChannelConfig | None = None):
        self.address = address
        self.timeout_s = timeout_s
        self._channel = make_channel(address, channel_config)
        self.stub = memory_pb2_grpc.MemoryServiceStub(self._channel)

    async def __aenter__(self) -> MemoryClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def ingest(self, records: Iterable[memory_pb2.EpisodeRecord]) -> memory_pb2.IngestSummary:
        return await self.stub.Ingest(iter(list(records)), timeout=self.timeout_s)

    async def query(self, family: str, layout_key: str, **kw) -> View:
        return decode_view(await self.stub.Query(query_request(family, layout_key, **kw), timeout=self.timeout_s))

    async def shape(self, transitions: Iterable[memory_pb2.ShapeTransition], gamma: float = 0.0) -> memory_pb2.ShapedRewards:
        return await self.stub.Shape(memory_pb2.ShapeBatch(transitions=list(transitions), gamma=gamma), timeout=self.timeout_s)

    async def stats(self) -> memory_pb2.MemoryStats:
        return await self.stub.Stats(memory_pb2.MemoryStatsRequest(), timeout=self.timeout_s)

    async def snapshot(self) -> memory_pb2.MemorySnapshotInfo:
        return await self.stub.Snapshot(memory_pb2.MemorySnapshotRequest(), timeout=self.timeout_s)

    async def reset(self, family: str = "", layout_key: str = "") -> memory_pb2.MemoryResetResponse:
        return await self.stub.Reset(memory_pb2.MemoryResetRequest(family=family, layout_key=layout_key), timeout=self.timeout_s)


class SyncMemoryClient:
    """Blocking client (grpc sync channel): the same calls as MemoryClient."""

    def __init__(self, address: str, timeout_s: float = 30.0):
        self.address = address
        self.timeout_s = timeout_s
        self._channel = make_channel(address, aio=False)
        self.stub = memory_pb2_grpc.MemoryServiceStub(self._channel)

    def __enter__(self) -> SyncMemoryClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def ingest(self, records: Iterable[memory_pb2.EpisodeRecord]) -> memory_pb2.IngestSummary:
        return self.stub.Ingest(iter(list(records)), timeout=self.timeout_s)

    def query(self, family: str, layout_key: str, **kw) -> View:
        return decode_view(self.stub.Query(query_request(family, layout_key, **kw), timeout=self.timeout_s))

    def shape(self, transitions: Iterable[memory_pb2.ShapeTransition], gamma: float = 0.0) -> memory_pb2.ShapedRewards:
        return self.stub.Shape(memory_pb2.ShapeBatch(transitions=list(transitions), gamma=gamma), timeout=self.timeout_s)

    def stats(self) -> memory_pb2.MemoryStats:
        return self.stub.Stats(memory_pb2.MemoryStatsRequest(), timeout=self.timeout_s)

    def snapshot(self) -> memory_pb2.MemorySnapshotInfo:
        return self.stub.Snapshot(memory_pb2.MemorySnapshotRequest(), timeout=self.timeout_s)

    def reset(self, family: str = "", layout_key: str = "") -> memory_pb2.MemoryResetResponse:
        return self.stub.Reset(memory_pb2.MemoryResetRequest(family=family, layout_key=layout_key), timeout=self.timeout_s)
