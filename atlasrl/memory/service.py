"""MemoryService over gRPC: protobuf in, domain calls, protobuf out.

Domain errors map to status codes: MemoryInputError -> INVALID_ARGUMENT,
UnknownFamily -> NOT_FOUND, TooLarge -> RESOURCE_EXHAUSTED. Inside an Ingest
stream each episode is validated on its own before it touches the state: a bad
one is listed in IngestSummary.rejected with its status and the good ones are
applied (the stream is never aborted for one bad episode).
"""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np

from atlasrl import codec
from atlasrl.atlas_image import overlay
from atlasrl.memory.config import MemoryConfig
from atlasrl.memory.errors import MemoryInputError, TooLarge, UnknownFamily
from atlasrl.memory.records import check_cell, check_name, decode_frame, episode_from_record
from atlasrl.memory.shaping import potential, shaping_terms
from atlasrl.memory.snapshotter import Snapshotter
from atlasrl.memory.state import MemoryState
from atlasrl.metrics import Metrics
from atlasrl.rpc import (
    FailedPrecondition,
    InvalidArgument,
    MalformedRequest,
    NotFound,
    ResourceExhausted,
    to_status_msg,
)
from atlasrl.rpc.errors import status_of
from atlasrl.v1 import env_pb2, memory_pb2

SOURCE_ENUM = {"layout": memory_pb2.ATLAS_SOURCE_LAYOUT, "blended": memory_pb2.ATLAS_SOURCE_BLENDED,
               "family": memory_pb2.ATLAS_SOURCE_FAMILY, "empty": memory_pb2.ATLAS_SOURCE_EMPTY}
MAX_LISTED_REJECTIONS = 1000
OUTCOME_ENUM = {"success": memory_pb2.EXEMPLAR_OUTCOME_SUCCESS, "failure": memory_pb2.EXEMPLAR_OUTCOME_FAILURE}


def as_service_error(exc: Exception) -> Exception:
    if isinstance(exc, MemoryInputError):
        return InvalidArgument(str(exc))
    if isinstance(exc, UnknownFamily):
        return NotFound(str(exc))
    if isinstance(exc, TooLarge):
        return ResourceExhausted(str(exc))
    return exc


class MemoryMetrics:
    def __init__(self, m: Metrics):
        self.ingested = m.counter("memory_episodes_ingested_total", "Episodes applied to the memory", ["family"])
        self.rejected = m.counter("memory_episodes_rejected_total", "Episodes refused in Ingest streams", ["code"])
        self.duplicates = m.counter("memory_episodes_duplicate_total", "Episodes ignored as already applied")
        self.version = m.gauge("memory_version", "Global memory version")
        self.family_version = m.gauge("memory_family_atlas_version", "Version of the goal-relative family atlas", ["family"])
        self.atlases = m.gauge("memory_layout_atlases", "Layout atlases held")
        self.exemplars = m.gauge("memory_exemplars", "Key frames held")
        self.query_latency = m.histogram("memory_query_latency_seconds", "Query handling time")
        self.shape_latency = m.histogram("memory_shape_latency_seconds", "Shape handling time")
        self.shape_transitions = m.counter("memory_shaped_transitions_total", "Transitions shaped")
        self.errors = m.counter("memory_errors_total", "Requests or episodes that failed, by method and code", ["method", "code"])
        self.snapshot_seconds = m.histogram("memory_snapshot_seconds", "Time to write a snapshot")
        self.snapshot_bytes = m.gauge("memory_snapshot_bytes", "Size of the last snapshot")
        self.snapshot_version = m.gauge("memory_snapshot_version", "Memory version in the last snapshot")


class MemoryServicer:
    def __init__(self, cfg: MemoryConfig, state: MemoryState, snapshotter: Snapshotter, metrics: Metrics):
        self.cfg, self.state, self.snapshotter = cfg, state, snapshotter
        self.m = MemoryMetrics(metrics)
        self.rejected_total = 0
        self.accepted_total = 0
        self.queries_total = 0  # Query + Shape requests served by this process
        self._encoded: dict[int, object] = {}  # exemplar seq -> encoded Tensor
        self._refresh_gauges()

    @contextmanager
    def _errors(self, method: str):
        try:
            yield
        except Exception as e:  # noqa: BLE001 - mapped, counted, re-raised
            err = as_service_error(e)
            self.m.errors.labels(method, status_of(err)[0].name).inc()
            raise err from None

    def _refresh_gauges(self) -> None:
        self.m.version.set(self.state.version)
        self.m.atlases.set(len(self.state.layouts))
        self.m.exemplars.set(self.state.bank.count())
        for family, atlas in self.state.families.items():
            self.m.family_version.labels(family).set(atlas.version)

    def snapshot_written(self, info) -> None:
        self.m.snapshot_seconds.observe(info.seconds)
        self.m.snapshot_bytes.set(info.bytes)
        self.m.snapshot_version.set(info.version)

    # -- Ingest ------------------------------------------------------------------

    async def Ingest(self, requests, context):
        summary = memory_pb2.IngestSummary()
        index = 0
        while True:
            episode_id = ""
            try:
                rec = await requests.__anext__()
                episode_id = rec.episode_id
                ep = episode_from_record(rec, self.cfg.limits, self.cfg.atlas.anchor_kinds, self.cfg.atlas.tracked_entity_kinds)
                if self.state.is_duplicate(ep.episode_id):
                    summary.duplicates += 1
                    self.m.duplicates.inc()
                else:
                    self.state.check(ep)
                    self.state.apply(ep)
                    summary.accepted += 1
                    self.accepted_total += 1
                    self.m.ingested.labels(ep.family).inc()
            except StopAsyncIteration:
                break
            except (MalformedRequest, MemoryInputError, TooLarge, codec.CodecError) as e:
                err = as_service_error(e)
                status = to_status_msg(err)
                if len(summary.rejected) < MAX_LISTED_REJECTIONS:  # bounded reply, whatever the stream holds
                    summary.rejected.append(memory_pb2.IngestRejection(index=index, episode_id=episode_id, status=status))
                self.rejected_total += 1
                name = status_of(err)[0].name
                self.m.rejected.labels(name).inc()
                self.m.errors.labels("Ingest", name).inc()
            index += 1
        summary.received = index
        summary.memory_version = self.state.version
        self._refresh_gauges()
        if index == 0:
            self.m.errors.labels("Ingest", "INVALID_ARGUMENT").inc()
            raise InvalidArgument("empty Ingest stream: send at least one EpisodeRecord before closing")
        return summary

    # -- Query -------------------------------------------------------------------

    async def Query(self, request: memory_pb2.MemoryQuery, context):
        t0 = time.perf_counter()
        with self._errors("Query"):
            family = check_name(request.family, "family")
            layout_key = check_name(request.layout_key, "layout_key")
            frame = None
            if request.HasField("frame"):
                frame = decode_frame(request.frame, self.cfg.limits.max_frame_bytes, "frame")
            goal = (request.goal.row, request.goal.col) if request.has_goal else None
            view = self.state.view(family, layout_key, request.grid_rows, request.grid_cols, goal)
            rows, cols = view.danger.shape
            agent = check_cell(request.agent, rows, cols, "agent") if request.has_agent else None
            out = memory_pb2.MemoryView(
                danger=codec.encode(view.danger.astype(np.float16), "danger", compress=True),
                affinity=codec.encode(view.affinity.astype(np.float16), "affinity", compress=True),
                layout_version=view.layout_version, family_version=view.family_version,
                memory_version=self.state.version, source=SOURCE_ENUM[view.source],
                layout_episodes=view.layout_episodes, family_episodes=view.family_episodes,
                lambda_affinity=self.cfg.shaping.lambda_affinity, lambda_danger=self.cfg.shaping.lambda_danger,
                gamma=self.cfg.shaping.gamma)
            if request.include_overlay:
                out.overlay.CopyFrom(codec.encode(overlay(frame, view.danger, view.affinity, agent), "overlay"))
            k = min(int(request.top_k), self.cfg.exemplars.max_top_k)
            for ex, sim in self.state.bank.top_k(family, frame, k):
                out.exemplars.append(memory_pb2.Exemplar(
                    image=self._exemplar_tensor(ex), caption=ex.caption, outcome=OUTCOME_ENUM[ex.outcome],
                    terminal_cause=ex.cause, similarity=sim, layout_key=ex.layout_key, episode_id=ex.episode_id))
            for s in self.state.skills(family, layout_key):
                out.skills.append(memory_pb2.TextSkill(text=s.text, kind=s.kind, support=s.support, rate=s.rate,
                                                       cells=[env_pb2.GridCoord(row=r, col=c) for r, c in s.cells]))
        self.queries_total += 1
        self.m.query_latency.observe(time.perf_counter() - t0)
        return out

    def _exemplar_tensor(self, ex):
        """Stored frames never change: encode each once (keyed by its unique insertion number)."""
        t = self._encoded.get(ex.seq)
        if t is None:
            if len(self._encoded) > 2 * self.state.bank.count() + 64:
                self._encoded.clear()  # drop frames evicted since
            t = self._encoded[ex.seq] = codec.encode(ex.image, "exemplar")
        return t

    # -- Shape -------------------------------------------------------------------

    async def Shape(self, request: memory_pb2.ShapeBatch, context):
        t0 = time.perf_counter()
        with self._errors("Shape"):
            n = len(request.transitions)
            if n > self.cfg.limits.max_shape_batch:
                raise TooLarge(f"ShapeBatch holds {n} transitions; the limit is {self.cfg.limits.max_shape_batch}")
            gamma = float(request.gamma) if request.gamma else self.cfg.shaping.gamma
            if not (0.0 < gamma <= 1.0):
                raise MemoryInputError(f"gamma must be in (0, 1], got {gamma}")
            groups: dict[tuple, list[int]] = defaultdict(list)
            for i, tr in enumerate(request.transitions):
                check_name(tr.family, "family", f"transitions[{i}]")
                check_name(tr.layout_key, "layout_key", f"transitions[{i}]")
                goal = (tr.goal.row, tr.goal.col) if tr.has_goal else None
                groups[(tr.family, tr.layout_key, tr.grid_rows, tr.grid_cols, goal)].append(i)
            shaping, phi_s, phi_n = np.zeros(n), np.zeros(n), np.zeros(n)
            sources = [0] * n
            for (family, layout_key, rows, cols, goal), idx in groups.items():
                try:
                    view = self.state.view(family, layout_key, rows, cols, goal)
                except (MemoryInputError, UnknownFamily) as e:
                    raise type(e)(f"transitions[{idx[0]}]: {e}") from None
                r, c = view.danger.shape
                trs = [request.transitions[i] for i in idx]
                cells = np.array([check_cell(t.cell, r, c, f"transitions[{i}].cell") for i, t in zip(idx, trs)]).reshape(-1, 2)
                nxt = np.array([check_cell(t.next_cell, r, c, f"transitions[{i}].next_cell") for i, t in zip(idx, trs)]).reshape(-1, 2)
                term = np.array([t.terminal for t in trs], bool)
                f, ps, pn = shaping_terms(potential(view, self.cfg.shaping), cells, nxt, term, gamma)
                shaping[idx], phi_s[idx], phi_n[idx] = f, ps, pn
                for i in idx:
                    sources[i] = SOURCE_ENUM[view.source]
        self.queries_total += 1
        self.m.shape_transitions.inc(n)
        self.m.shape_latency.observe(time.perf_counter() - t0)
        return memory_pb2.ShapedRewards(shaping=shaping.tolist(), phi=phi_s.tolist(), phi_next=phi_n.tolist(),
                                        sources=sources, memory_version=self.state.version, gamma=gamma)  # type: ignore[arg-type]  # enum ints; the stubs ask for AtlasSource

    # -- Stats / Snapshot / Reset -------------------------------------------------

    async def Stats(self, request, context):
        out = memory_pb2.MemoryStats(memory_version=self.state.version, episodes_ingested=self.state.episodes_ingested,
                                     episodes_rejected=self.rejected_total, exemplars=self.state.bank.count())
        for (family, layout_key), a in sorted(self.state.layouts.items()):
            out.atlases.append(memory_pb2.AtlasStats(family=family, layout_key=layout_key, version=a.version,
                                                     episodes=a.episodes, successes=a.successes, rows=a.rows, cols=a.cols))
        for family, a in sorted(self.state.families.items()):
            out.atlases.append(memory_pb2.AtlasStats(family=family, version=a.version, episodes=a.episodes,
                                                     successes=a.successes, rows=a.rows, cols=a.cols))
        if self.snapshotter.last is not None:
            out.last_snapshot_unix = self.snapshotter.last.unix_time
            out.last_snapshot_version = self.snapshotter.last.version
        return out

    async def Snapshot(self, request, context):
        with self._errors("Snapshot"):
            if not self.snapshotter.enabled:
                raise FailedPrecondition("the memory runs without a data directory (--data-dir): nothing to snapshot to")
            info = await self.snapshotter.snapshot()
        return memory_pb2.MemorySnapshotInfo(path=str(info.path), memory_version=info.version, bytes=info.bytes,
                                             seconds=info.seconds)

    async def Reset(self, request: memory_pb2.MemoryResetRequest, context):
        with self._errors("Reset"):
            if request.layout_key and not request.family:
                raise MemoryInputError("layout_key needs family: name the family of the layout to forget")
            if request.family and not self.state.knows_family(request.family):
                raise UnknownFamily(f"unknown family '{request.family}': nothing to forget")
            atlases, frames = self.state.reset(request.family, request.layout_key)
        self._refresh_gauges()
        return memory_pb2.MemoryResetResponse(atlases_removed=atlases, exemplars_removed=frames,
                                              memory_version=self.state.version)

