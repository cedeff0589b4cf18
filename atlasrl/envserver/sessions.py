"""Bookkeeping shared by every protocol the env server speaks: sessions, handles, capacity, metrics.

    manager = EnvManager(cfg, pool, EnvMetrics(Metrics("envserver")))
    session = manager.new_session("envservice")
    handle, spec_bytes = await manager.open(session, "frozenlake", {}, seed=3)
    outcome = await manager.reset(session, handle, seed=None)
    outcomes = await manager.step(session, [(handle, "Right")], strict=False)
    await manager.end_session(session)          # closes whatever the stream left open

A handle belongs to the session (stream) that opened it; other sessions get
NOT_FOUND for it. Requests are checked here (capacity, ownership, episode
state) before anything reaches a worker; errors raise ``ServiceError`` for a
whole request or come back as per-action ``Outcome`` codes.
"""
from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

import grpc

from atlasrl.envserver.config import EnvServerConfig
from atlasrl.envserver.host import Outcome
from atlasrl.envserver.workers import WorkerPool
from atlasrl.metrics import Metrics
from atlasrl.rpc.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from atlasrl.v1 import env_pb2, tensor_pb2

_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}
NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION.value[0]

NEW, RUNNING, DONE = "new", "running", "done"  # episode state of a handle


class EnvMetrics:
    """The env server's Prometheus series (names get the ``atlasrl_`` prefix)."""

    def __init__(self, m: Metrics):
        self.metrics = m
        self.steps = m.counter("env_steps_total", "Actions applied to envs (one per Action in a Step)", ["env_id"])
        self.resets = m.counter("env_resets_total", "Episodes started", ["env_id"])
        self.step_latency = m.histogram("env_step_latency_seconds", "Time of one env step or reset in its worker: step + render + encode", ["env_id"])
        self.request_latency = m.histogram("env_request_latency_seconds", "Time to answer one Session request, by kind", ["op"])
        self.live_envs = m.gauge("env_live_envs", "Env instances open now")
        self.live_sessions = m.gauge("env_live_sessions", "Streams open now", ["protocol"])
        self.image_raw = m.counter("env_image_raw_bytes_total", "Observation image bytes before the codec")
        self.image_wire = m.counter("env_image_wire_bytes_total", "Observation image bytes on the wire (after zstd when it pays)")
        self.errors = m.counter("env_errors_total", "Requests or actions answered with an error status", ["op", "code"])
        self._children: dict[tuple[str, str], tuple] = {}   # (op, env_id) -> labelled series: labels() is a
                                                            # lock and a dict lookup per call, on every step

    def latency(self, op: str):
        """The request-latency series of one request kind (cached like the per-env ones)."""
        key = ("request", op)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = (self.request_latency.labels(op),)
        return child[0]

    def error(self, op: str, code: int) -> None:
        self.errors.labels(op, _NAMES.get(code, str(code))).inc()

    def outcome(self, op: str, o: Outcome) -> None:
        if o.code:
            self.error(op, o.code)
            return
        key = (op, o.env_id)
        series = self._children.get(key)
        if series is None:
            series = self._children[key] = ((self.steps if op == "step" else self.resets).labels(o.env_id),
                                             self.step_latency.labels(o.env_id))
        series[0].inc()
        series[1].observe(o.seconds)
        self.image_raw.inc(o.raw_bytes)
        self.image_wire.inc(o.wire_bytes)


@dataclass
class _Env:
    env_id: str
    state: str = NEW


@dataclass
class Session:
    """The envs one stream opened."""

    id: int
    protocol: str
    envs: dict[int, _Env] = field(default_factory=dict)
    ended: bool = False


class EnvManager:
    def __init__(self, cfg: EnvServerConfig, pool: WorkerPool, metrics: EnvMetrics):
        self.cfg = cfg
        self.pool = pool
        self.metrics = metrics
        self.sessions: dict[int, Session] = {}
        self.live = 0  # open handles across sessions (capacity)
        self.steps_total = 0  # actions applied since start (reported to the coordinator)
        self._handles = itertools.count(1)
        self._session_ids = itertools.count(1)
        self._spec_cache: dict[str, bytes] = {}
        self.draining = asyncio.Event()

    # --- sessions ---------------------------------------------------------------------
    def new_session(self, protocol: str) -> Session:
        s = Session(next(self._session_ids), protocol)
        self.sessions[s.id] = s
        self.metrics.live_sessions.labels(protocol).inc()
        return s

    async def end_session(self, session: Session) -> int:
        """Close every env the session still holds; returns how many."""
        if session.ended:
            return 0
        session.ended = True
        n = len(session.envs)
        await self._close_handles(session, list(session.envs))
        self.sessions.pop(session.id, None)
        self.metrics.live_sessions.labels(session.protocol).dec()
        return n

    # --- requests ---------------------------------------------------------------------
    async def open(self, session: Session, env_id: str, config: dict[str, str], seed: int | None) -> tuple[int, bytes]:
        if not env_id:
            raise InvalidArgument("open request has no env_id")
        if not self.cfg.allows(env_id):
            raise NotFound(f"env id '{env_id}' is not served here; this server serves: {', '.join(self.cfg.envs)}")
        if self.live >= self.cfg.max_envs:
            raise ResourceExhausted(
                f"server is at its limit of {self.cfg.max_envs} live envs (--max-envs); close envs or use another server"
            )
        handle = next(self._handles)
        self._track(+1)
        try:
            spec = await self.pool.open(handle, env_id, dict(config), seed)
        except BaseException:
            self._track(-1)
            raise
        session.envs[handle] = _Env(env_id)
        if not config:
            self._spec_cache.setdefault(env_id, spec)
        return handle, spec

    async def reset(self, session: Session, handle: int, seed: int | None) -> Outcome:
        if handle not in session.envs:
            raise NotFound(self._unknown(session, handle))
        o = await self.pool.reset(handle, seed)
        self._after(session, "reset", [handle], [o])
        return o

    async def reset_many(self, session: Session, resets: list[tuple[int, int | None]]) -> list[Outcome]:
        """A ResetBatch: each (handle, seed) reset on its own; an unknown or repeated handle fails its entry only."""
        if not resets:
            raise InvalidArgument("reset_batch request has no resets")
        out: list[Outcome | None] = [None] * len(resets)
        todo: list[int] = []
        seen: set[int] = set()
        for i, (h, _) in enumerate(resets):
            if h not in session.envs:
                out[i] = Outcome(NOT_FOUND, self._unknown(session, h))
            elif h in seen:
                out[i] = Outcome(INVALID_ARGUMENT, f"env handle {h} appears more than once in this reset_batch; send one reset per env")
            else:
                todo.append(i)
            seen.add(h)
        for o in out:
            if o is not None:
                self.metrics.error("reset", o.code)
        if todo:
            done = await self.pool.reset_many([resets[i] for i in todo])
            self._after(session, "reset", [resets[i][0] for i in todo], done)
            for i, o in zip(todo, done):
                out[i] = o
        return out  # type: ignore[return-value]

    async def step(self, session: Session, actions: list[tuple[int, str | tensor_pb2.Tensor]], strict: bool,
                   auto_reset: bool = False) -> list[Outcome]:
        if not actions:
            raise InvalidArgument("step request has no actions")
        if not session.envs:
            raise FailedPrecondition("no env is open on this stream: send Open (then Reset) before Step")
        out: list[Outcome | None] = [None] * len(actions)
        todo: list[int] = []
        seen: set[int] = set()
        for i, (h, _) in enumerate(actions):
            env = session.envs.get(h)
            if env is None:
                out[i] = Outcome(NOT_FOUND, self._unknown(session, h))
            elif h in seen:
                out[i] = Outcome(INVALID_ARGUMENT, f"env handle {h} appears more than once in this step; send one action per env")
            elif env.state == NEW:
                out[i] = Outcome(FAILED_PRECONDITION, f"env handle {h} has no episode yet: send Reset before Step")
            elif env.state == DONE:
                out[i] = Outcome(FAILED_PRECONDITION, f"the episode of env handle {h} has ended (terminated or truncated): send Reset")
            else:
                todo.append(i)
            seen.add(h)
        for i in range(len(actions)):
            if (o := out[i]) is not None:
                self.metrics.error("step", o.code)
        if todo:
            done = await self.pool.step([actions[i] for i in todo], strict, auto_reset)
            self._after(session, "step", [actions[i][0] for i in todo], done)
            for i, o in zip(todo, done):
                out[i] = o
        return out  # type: ignore[return-value]

    async def close(self, session: Session, handles: list[int]) -> tuple[int, list[int]]:
        """Close the session's handles among ``handles``; returns (closed, unknown handles)."""
        mine = [h for h in dict.fromkeys(handles) if h in session.envs]
        unknown = [h for h in handles if h not in session.envs]
        await self._close_handles(session, mine)
        return len(mine), unknown

    async def default_specs(self) -> list[bytes]:
        """Spec of every env id served here, with default config (cached).

        Exact ids (grid games, cheap to build) get a full spec from a throwaway
        instance. Ids of prefix backends (``maniskill:<Task>``, seconds per
        instance) are listed with id and family only, until an instance with
        default config has been opened here.
        """
        from atlasrl.envserver import registry

        exact = set(registry.list_ids(include_prefixed=False))
        specs = []
        for env_id in registry.list_ids():
            if not self.cfg.allows(env_id):
                continue
            if env_id not in self._spec_cache and env_id in exact:
                self._spec_cache[env_id] = await self.pool.default_spec(env_id)
            specs.append(self._spec_cache.get(env_id) or env_pb2.EnvSpec(env_id=env_id, family=env_id.split(":", 1)[0]).SerializeToString())
        return specs

    # --- internals --------------------------------------------------------------------
    def _after(self, session: Session, op: str, handles: list[int], outcomes: list[Outcome]) -> None:
        for h, o in zip(handles, outcomes):
            self.metrics.outcome(op, o)
            if op == "step" and not o.code:
                self.steps_total += 1
            if o.reset is not None:
                self.metrics.outcome("reset", o.reset)
            env = session.envs.get(h)
            if env is not None and o.code == 0:
                # An episode that ended and was reset automatically is running again; a failed
                # automatic reset leaves it done, so the client's own Reset reports the failure.
                env.state = RUNNING if not o.done or o.restarted is not None else DONE

    async def _close_handles(self, session: Session, handles: list[int]) -> None:
        for h in handles:
            session.envs.pop(h, None)
        self._track(-len(handles))
        if handles:
            await self.pool.close(handles)

    def _track(self, delta: int) -> None:
        self.live += delta
        self.metrics.live_envs.set(self.live)

    def _unknown(self, session: Session, handle: int) -> str:
        if not session.envs:
            return f"env handle {handle} is not open on this stream (no env is open: send Open first)"
        return f"env handle {handle} is not open on this stream (never opened here, or already closed)"
