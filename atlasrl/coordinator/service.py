"""CoordinatorService servicer: maps proto messages onto the SQLite state and the assignment function."""
from __future__ import annotations

import asyncio
import logging
import time

from atlasrl.coordinator.assignment import Actor, Server, assign, fingerprint
from atlasrl.coordinator.config import CoordinatorConfig
from atlasrl.coordinator.state import Member, StateStore, UnknownMember
from atlasrl.metrics import Metrics
from atlasrl.rpc import FailedPrecondition, InvalidArgument, NotFound, to_status_msg
from atlasrl.rpc.auth import caller_role
from atlasrl.rpc.errors import PermissionDenied
from atlasrl.v1 import coordinator_pb2 as pb

log = logging.getLogger("atlasrl.coordinator")

ROLE_NAMES = {pb.ROLE_ENVSERVER: "envserver", pb.ROLE_ACTOR: "actor", pb.ROLE_LEARNER: "learner",
              pb.ROLE_MEMORY: "memory", pb.ROLE_OTHER: "other", pb.ROLE_CRITIC: "critic"}
ROLE_ENUMS = {v: k for k, v in ROLE_NAMES.items()}
STATE_NAMES = {pb.RUN_STATE_RUNNING: "running", pb.RUN_STATE_PAUSED: "paused", pb.RUN_STATE_STOPPING: "stopping"}
STATE_ENUMS = {v: k for k, v in STATE_NAMES.items()}
MAX_CAPACITY = 65536
MAX_NAME = 256


def _check_name(key: str, value: str) -> None:
    if len(value) > MAX_NAME:
        raise InvalidArgument(f"{key} is {len(value)} characters; at most {MAX_NAME}")


class CoordinatorServicer:
    def __init__(self, cfg: CoordinatorConfig, store: StateStore, metrics: Metrics):
        self.cfg, self.store, self.metrics = cfg, store, metrics
        self._changed = asyncio.Event()  # replaced on every view change; Watch streams wait on it
        self._started = time.time()
        self._tasks: list[asyncio.Task] = []
        m = metrics
        # Labels never reuse the scrape's target labels (role, name: the process scraped), which
        # Prometheus would rename exported_role / exported_name.
        self.m_members = m.gauge("coordinator_members", "Members alive, by role", ["member_role"])
        self.m_expired = m.counter("coordinator_lease_expirations_total", "Members declared dead for a missed lease", ["member_role"])
        self.m_version = m.gauge("coordinator_policy_version", "Latest policy version reported by the learner")
        self.m_generation = m.gauge("coordinator_assignment_generation", "Assignment generation")
        self.m_counter = m.gauge("run_counter", "Global run counters (sums over every member ever registered)", ["counter"])
        self.m_gauge = m.gauge("run_gauge", "Run-wide gauges (mean over alive members reporting them)", ["gauge"])
        self.m_lag = m.gauge("coordinator_actor_version_lag", "Policy versions an actor lags behind the learner (from heartbeats)", ["actor"])
        self.m_gate = m.counter("coordinator_staleness_waits_total", "Heartbeats answered may_proceed=false", ["actor"])
        for role in ROLE_ENUMS:  # exported at 0 from the start: a dashboard shows 0, not "no data"
            self.m_expired.labels(member_role=role)

    # --- lifecycle --------------------------------------------------------------
    def start_background(self) -> None:
        self.store.extend_all_leases(time.time() + self.cfg.restart_grace_s)
        self._reassign()
        self._refresh_metrics()
        self._tasks = [asyncio.create_task(self._reaper()), asyncio.create_task(self._sampler())]

    async def stop_background(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._notify()

    async def _reaper(self) -> None:
        while True:
            await asyncio.sleep(min(self.cfg.lease_ttl_s / 4, 1.0))
            expired = self.store.expire(time.time(), self.cfg.lease_ttl_s)
            for member in expired:
                log.warning("lease expired: %s (%s) at %s", member.name, member.role, member.address)
                self.m_expired.labels(member_role=member.role).inc()
            if expired:
                self._reassign()
                self._notify()
            self._refresh_metrics()

    async def _sampler(self) -> None:
        while True:
            self.store.append_history(time.time())
            await asyncio.sleep(self.cfg.history_interval_s)

    # --- helpers ----------------------------------------------------------------
    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _assignment(self) -> dict:
        servers = [Server(m.member_id, m.address, m.capacity, tuple(m.capabilities)) for m in self.store.members(role="envserver")]
        actors = [Actor(m.member_id, m.capacity, tuple(m.capabilities)) for m in self.store.members(role="actor")]
        return assign(actors, servers)

    def _reassign(self) -> None:
        if self.store.update_assignment_fingerprint(fingerprint(self._assignment())):
            log.info("assignment generation %d", self.store.generation)

    def _address_of(self, role: str) -> str:
        alive = self.store.members(role=role)
        return alive[-1].address if alive else ""  # the most recently registered one

    def view(self) -> pb.RunView:
        return pb.RunView(policy_version=self.store.policy_version, run_state=STATE_ENUMS[self.store.run_state],
                          assignment_generation=self.store.generation, max_staleness=self.cfg.max_staleness,
                          learner_address=self._address_of("learner"), memory_address=self._address_of("memory"))

    def _refresh_metrics(self) -> None:
        for role in ROLE_ENUMS:
            self.m_members.labels(member_role=role).set(len(self.store.members(role=role)))
        self.m_version.set(self.store.policy_version)
        self.m_generation.set(self.store.generation)
        for k, v in self.store.global_counters().items():
            self.m_counter.labels(counter=k).set(v)
        for k, g in self.store.global_gauges().items():
            self.m_gauge.labels(gauge=k).set(g)

    def _member(self, member_id: str) -> Member:
        if not member_id:
            raise InvalidArgument("member_id is empty; call Register first")
        try:
            return self.store.member(member_id)
        except UnknownMember as e:
            raise NotFound(str(e.args[0])) from None

    # --- RPCs -------------------------------------------------------------------
    async def Register(self, request: pb.RegisterRequest, context) -> pb.RegisterResponse:
        role = ROLE_NAMES.get(request.role)
        if role is None:
            raise InvalidArgument(f"role must be one of {sorted(ROLE_ENUMS)}; got enum value {request.role}")
        token_role = caller_role()   # with tokens on: a member registers as the role of its own token (or admin)
        if token_role is not None and token_role not in (role, "admin"):
            raise PermissionDenied(f"the {token_role} role's token may not register a member of role {role}: start "
                                   f"the {role} with its own token file (pki/tokens/{role}.tokens)")
        if not 0 <= request.capacity <= MAX_CAPACITY:
            raise InvalidArgument(f"capacity must be in [0, {MAX_CAPACITY}]; got {request.capacity}")
        if role in ("envserver", "learner", "memory", "critic") and not request.address:
            raise InvalidArgument(f"address is required for role {role} (host:port others connect to)")
        if request.address and ":" not in request.address:
            raise InvalidArgument(f"address must be host:port; got {request.address!r}")
        for key in ("name", "address", "metrics_address"):
            _check_name(key, getattr(request, key))
        if self.store.run_state == "stopping":
            raise FailedPrecondition("the run is stopping; not accepting new members")
        member = self.store.register(role=role, name=request.name, address=request.address, capacity=request.capacity,
                                     metrics_address=request.metrics_address, capabilities=list(request.capabilities),
                                     now=time.time())
        log.info("registered %s (%s) at %s capacity %d", member.name, role, member.address, member.capacity)
        self._reassign()
        self._refresh_metrics()
        self._notify()
        return pb.RegisterResponse(member_id=member.member_id, lease_ttl_s=self.cfg.lease_ttl_s, view=self.view())

    async def Heartbeat(self, request: pb.HeartbeatRequest, context) -> pb.HeartbeatResponse:
        member = self._member(request.member_id)
        for name, value in request.counters.items():
            if value < 0:
                raise InvalidArgument(f"counter {name!r} is negative ({value}); counters are cumulative totals")
        before = self.store.policy_version
        try:
            member = self.store.heartbeat(member.member_id, now=time.time(), policy_version=request.policy_version,
                                          counters=dict(request.counters), gauges=dict(request.gauges),
                                          last_error=request.last_error[:1000], error_count=request.error_count)
        except UnknownMember as e:
            raise NotFound(str(e.args[0])) from None
        if self.store.policy_version != before:
            self.m_version.set(self.store.policy_version)
            self._notify()
        may_proceed = True
        if member.role == "actor":
            lag = max(0, self.store.policy_version - member.policy_version) if member.policy_version >= 0 else 0
            self.m_lag.labels(actor=member.name).set(lag)
            gate_waits = self.m_gate.labels(actor=member.name)  # 0 until the gate first holds this actor
            may_proceed = lag <= self.cfg.max_staleness
            if not may_proceed:
                gate_waits.inc()
        return pb.HeartbeatResponse(view=self.view(), may_proceed=may_proceed)

    async def Deregister(self, request: pb.DeregisterRequest, context) -> pb.DeregisterResponse:
        member = self._member(request.member_id)
        self.store.deregister(member.member_id)
        log.info("deregistered %s (%s)", member.name, member.role)
        self._reassign()
        self._refresh_metrics()
        self._notify()
        return pb.DeregisterResponse(status=to_status_msg())

    async def GetAssignment(self, request: pb.GetAssignmentRequest, context) -> pb.Assignment:
        member = self._member(request.member_id)
        out = pb.Assignment(generation=self.store.generation, learner_address=self._address_of("learner"),
                            memory_address=self._address_of("memory"), critic_address=self._address_of("critic"))
        if member.role == "actor" and member.alive:
            for server, slots in self._assignment().get(member.member_id, []):
                out.env_servers.add(member_id=server.member_id, address=server.address, slots=slots)
        return out

    async def Watch(self, request: pb.WatchRequest, context):
        last = None
        while True:
            changed = self._changed
            view = self.view()
            if view != last:
                yield view
                last = view
            if view.run_state == pb.RUN_STATE_STOPPING:
                return
            await changed.wait()

    async def SetRunState(self, request: pb.SetRunStateRequest, context) -> pb.RunView:
        state = STATE_NAMES.get(request.run_state)
        if state is None:
            raise InvalidArgument(f"run_state must be RUNNING, PAUSED or STOPPING; got enum value {request.run_state}")
        if self.store.run_state == "stopping" and state != "stopping":
            raise FailedPrecondition("the run is stopping; STOPPING is final")
        log.warning("run state -> %s (%s)", state, request.reason or "no reason given")
        self.store.set_run_state(state)
        self._notify()
        return self.view()

    async def GetStatus(self, request: pb.GetStatusRequest, context) -> pb.ClusterStatus:
        if not 0 <= request.history_points <= 10000:
            raise InvalidArgument(f"history_points must be in [0, 10000]; got {request.history_points}")
        now = time.time()
        out = pb.ClusterStatus(view=self.view(), counters=self.store.global_counters(), gauges=self.store.global_gauges(),
                               started_at=self.store.started_at, uptime_s=now - self._started)
        for m in self.store.members(alive_only=not request.include_dead):
            out.members.add(member_id=m.member_id, role=ROLE_ENUMS[m.role], name=m.name, address=m.address,
                            metrics_address=m.metrics_address, capacity=m.capacity, capabilities=m.capabilities,
                            alive=m.alive, last_heartbeat_age_s=max(0.0, now - m.last_heartbeat),
                            policy_version=m.policy_version, counters=m.counters, gauges=m.gauges,
                            last_error=m.last_error, error_count=m.error_count, registered_at=m.registered_at)
        for t, counters, gauges in self.store.history(request.history_points):
            out.history.add(time=t, counters=counters, gauges=gauges)
        return out
