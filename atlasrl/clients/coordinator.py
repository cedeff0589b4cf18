"""Client of the coordinator: how every role joins a run.

Usage from any role with a ``--coordinator ADDR`` flag (inside its asyncio loop)::

    from atlasrl.clients.coordinator import RoleRegistration

    reg = RoleRegistration(args.coordinator, role="envserver", name="envserver-0",
                           address=server.address, metrics_address=f"127.0.0.1:{metrics_port}",
                           capacity=workers, capabilities=["frozenlake"])
    await reg.start()                  # registers (retries until the coordinator answers), then heartbeats
    reg.counters["env_steps"] += 1     # cumulative totals; sent with the next heartbeat
    reg.gauges["loss"] = 0.42          # latest values
    # or let the helper ask: RoleRegistration(..., report=fill) calls fill(reg) before every heartbeat
    # (and the last one at close), so a role needs no reporting loop of its own
    reg.policy_version = 17            # learner: version just published; actor: version it acts with
    reg.report_error("env crashed")    # shows up in `atlasrl status`
    ...
    await reg.close()                  # deregisters (one try, at most close_timeout_s: a dead coordinator never holds an exit)

Actors additionally::

    a = await reg.assignment()         # a.env_servers [(address, slots)], a.learner_address, a.memory_address
    await reg.wait_until_fresh()       # staleness gate: blocks while this actor lags > max_staleness
    await reg.wait_running()           # blocks while the run is paused; returns False once stopping
    if reg.view.assignment_generation != a.generation: a = await reg.assignment()

Processes without an asyncio loop (torch learners) use ``reg.start_in_thread()``
and ``reg.close_in_thread()``; ``reg.counters`` / ``reg.gauges`` / ``reg.policy_version``
may be written from any thread.

Standard names (the `atlasrl up` display, plots and `atlasrl status` read these):
    counters (cumulative ints):  env_steps, episodes, successes, tokens (generated),
                                 samples_trained (learner), episodes_pushed (actor), queries (memory)
    gauges (latest floats):      loss, kl, entropy, grad_norm, lr (learner); return_mean,
                                 success_rate, steps_per_s (actor); atlas_cells (memory)

Stopping never waits on the coordinator: ``close()`` sends one last heartbeat and the Deregister
without retries, all within ``close_timeout_s`` (2 s); and a SIGTERM/SIGINT that arrives while
``start()`` (or ``start_in_thread()``, called from the main thread) is still retrying the registration
abandons it: start returns unregistered (``registered`` False, no heartbeats, close does nothing), and
the role's own handler for that signal runs as usual. (Only a Python-level handler is chained; where
the signal keeps its default action the process simply dies.)

If the member's lease expired (a long stall) the next heartbeat gets NOT_FOUND and
the helper registers again; the new member reports only what the old one had not
already reported, so nothing is counted twice. A restarted coordinator keeps member
ids (SQLite), so heartbeats simply continue.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from atlasrl.rpc import ChannelConfig, make_channel
from atlasrl.rpc.retry import Backoff, retryable
from atlasrl.v1 import coordinator_pb2 as pb
from atlasrl.v1 import coordinator_pb2_grpc

log = logging.getLogger("atlasrl.clients.coordinator")

ROLES = {"envserver": pb.ROLE_ENVSERVER, "actor": pb.ROLE_ACTOR, "learner": pb.ROLE_LEARNER,
         "memory": pb.ROLE_MEMORY, "other": pb.ROLE_OTHER, "critic": pb.ROLE_CRITIC}
RUN_STATES = {"running": pb.RUN_STATE_RUNNING, "paused": pb.RUN_STATE_PAUSED, "stopping": pb.RUN_STATE_STOPPING}


@dataclass
class EnvAssignment:
    """What the coordinator tells a member to connect to."""

    generation: int
    env_servers: list[tuple[str, int]] = field(default_factory=list)  # (address, slots)
    learner_address: str = ""
    memory_address: str = ""
    critic_address: str = ""


class RegistrationAbandoned(RuntimeError):
    """A call through a registration that start() abandoned (the process was asked to stop)."""


class RoleRegistration:
    def __init__(self, coordinator: str, *, role: str, name: str = "", address: str = "", metrics_address: str = "",
                 capacity: int = 0, capabilities: list[str] | tuple[str, ...] = (), heartbeat_s: float | None = None,
                 rpc_timeout_s: float = 5.0, close_timeout_s: float = 2.0,
                 report: Callable[[RoleRegistration], None] | None = None):
        if role not in ROLES:
            raise ValueError(f"role must be one of {sorted(ROLES)}, got {role!r}")
        self.coordinator = coordinator
        self.request = pb.RegisterRequest(role=ROLES[role], name=name, address=address, metrics_address=metrics_address,
                                          capacity=capacity, capabilities=list(capabilities))
        self.counters: collections.Counter[str] = collections.Counter()
        self.gauges: dict[str, float] = {}
        self.policy_version = -1
        self.member_id = ""
        self.view = pb.RunView(policy_version=-1)
        self.may_proceed = True
        self.last_error = ""
        self.error_count = 0
        self._heartbeat_s = heartbeat_s
        self._timeout = rpc_timeout_s
        self._close_timeout = close_timeout_s
        self.report = report   # fills counters/gauges from the role's own state before every heartbeat (settable later)
        self.abandoned = False            # start() gave up registering: a stop signal came first
        self._base: dict[str, int] = {}   # totals already credited to earlier member ids of this process
        self._acked: dict[str, int] = {}  # totals the coordinator acknowledged for the current member id
        self._changed: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._channel = None
        self._stub = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._registering: asyncio.Future | None = None
        self._start_loop: asyncio.AbstractEventLoop | None = None   # the loop start() runs on

    # --- lifecycle --------------------------------------------------------------
    @property
    def registered(self) -> bool:
        return bool(self.member_id)

    async def start(self, *, register_timeout_s: float = 60.0) -> RoleRegistration:
        """Register (retrying while the coordinator is unreachable), then heartbeat and watch in the background.

        A SIGTERM/SIGINT while still registering abandons it: returns unregistered (see the module doc)."""
        self._changed = asyncio.Event()
        self._channel = make_channel(self.coordinator)
        self._stub = coordinator_pb2_grpc.CoordinatorServiceStub(self._channel)
        self._start_loop = asyncio.get_running_loop()
        registering = self._registering = asyncio.ensure_future(asyncio.wait_for(self._register(), register_timeout_s))
        with _on_stop_signals(self._abandon):
            if self.abandoned:                    # start_in_thread: the signal came before this loop ran
                registering.cancel()
            try:
                await registering
            except (asyncio.CancelledError, RegistrationAbandoned):
                if not self.abandoned:
                    raise
            finally:
                self._registering = None
        if self.abandoned:
            log.warning("stop requested while registering with %s: continuing unregistered", self.coordinator)
            self.member_id = ""
            return self
        self._tasks = [asyncio.create_task(self._heartbeat_loop()), asyncio.create_task(self._watch_loop())]
        return self

    async def close(self) -> None:
        """Stop heartbeating and leave: one last heartbeat (final counters) and Deregister, each tried once,
        together bounded by ``close_timeout_s``; a coordinator that is gone costs at most that."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._stub is not None and self.member_id:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._close_timeout
            try:
                r = await self._stub.Heartbeat(self._heartbeat_request(), timeout=max(0.05, deadline - loop.time()))
                self.may_proceed = r.may_proceed
                await self._stub.Deregister(pb.DeregisterRequest(member_id=self.member_id),
                                            timeout=max(0.05, deadline - loop.time()))
            except grpc.aio.AioRpcError as e:
                log.warning("deregister failed (left without it): %s %s", e.code().name, e.details())
        if self._channel is not None:
            await self._channel.close()

    def start_in_thread(self, *, register_timeout_s: float = 60.0) -> RoleRegistration:
        """Run the helper on its own event loop in a daemon thread; returns once registered (or abandoned:
        a SIGTERM/SIGINT while registering, when called from the main thread)."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run():
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self.start(register_timeout_s=register_timeout_s))
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                failure.append(e)
                started.set()
                return
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="coordinator-registration", daemon=True)
        # start() runs in the thread, where no signal handler can be set: chain them here, in the caller's.
        with _on_stop_signals(self._abandon):
            self._thread.start()
            started.wait()                 # interrupted by signals: their handlers run, then it waits on
        if failure:
            raise failure[0]
        return self

    def _abandon(self) -> None:
        """From a signal handler (main thread): give up the registration in progress."""
        self.abandoned = True
        loop = self._start_loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):   # the loop is closed: start() is over anyway
                loop.call_soon_threadsafe(self._cancel_registering)

    def _cancel_registering(self) -> None:
        if self._registering is not None:
            self._registering.cancel()

    def close_in_thread(self, timeout: float = 10.0) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self.close(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def call_in_thread(self, coro, timeout: float | None = None):
        """From another thread: run one of this helper's coroutines (e.g. ``reg.assignment()``) on its loop."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def report_error(self, message: str) -> None:
        self.last_error = message
        self.error_count += 1

    # --- queries ----------------------------------------------------------------
    async def assignment(self) -> EnvAssignment:
        a = await self._call(lambda: self._stub.GetAssignment(pb.GetAssignmentRequest(member_id=self.member_id), timeout=self._timeout))
        return EnvAssignment(a.generation, [(s.address, s.slots) for s in a.env_servers], a.learner_address, a.memory_address,
                             a.critic_address)

    async def wait_for(self, predicate, timeout: float | None = None) -> pb.RunView:
        """Wait until ``predicate(view)`` holds; returns that view."""
        async def loop():
            while not predicate(self.view):
                changed = self._changed
                try:  # also re-check periodically: the predicate may read local state (our own version)
                    await asyncio.wait_for(changed.wait(), 0.1)
                except TimeoutError:
                    pass
            return self.view
        return await asyncio.wait_for(loop(), timeout)

    async def wait_until_fresh(self, timeout: float | None = None) -> None:
        """Staleness gate for actors: wait while this member's policy_version lags by more than max_staleness."""
        def fresh(v: pb.RunView) -> bool:
            return self.policy_version < 0 or v.policy_version - self.policy_version <= v.max_staleness
        await self.wait_for(fresh, timeout)

    async def wait_running(self, timeout: float | None = None) -> bool:
        """Wait while paused; True when running, False once the run is stopping."""
        v = await self.wait_for(lambda v: v.run_state != pb.RUN_STATE_PAUSED, timeout)
        return v.run_state == pb.RUN_STATE_RUNNING

    @property
    def stopping(self) -> bool:
        return self.view.run_state == pb.RUN_STATE_STOPPING

    # --- internals --------------------------------------------------------------
    def _set_view(self, view: pb.RunView) -> None:
        if view != self.view:
            self.view = view
            self._changed.set()
            self._changed = asyncio.Event()

    async def _call(self, make_call):
        """Unary call with retries while the coordinator is unreachable (restart), re-registering on NOT_FOUND."""
        backoff = Backoff(0.1, 2.0)
        while True:
            if self.abandoned:
                raise RegistrationAbandoned("not registered: the process was asked to stop while registering")
            try:
                return await make_call()
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND and self.member_id:
                    log.warning("coordinator forgot member %s (%s); registering again", self.member_id, e.details())
                    await self._reregister()
                elif not retryable(e):
                    raise
                await backoff.sleep()

    async def _register(self) -> None:
        self.member_id = ""
        r = await self._call(lambda: self._stub.Register(self.request, timeout=self._timeout))
        self.member_id = r.member_id
        self._acked = {}
        if self._heartbeat_s is None:
            self._heartbeat_s = r.lease_ttl_s / 3
        self._set_view(r.view)

    async def _reregister(self) -> None:
        old = self.member_id
        credited = dict(self._acked)
        try:  # the coordinator may have applied a heartbeat whose answer we never saw: ask it
            st = await self._stub.GetStatus(pb.GetStatusRequest(include_dead=True), timeout=self._timeout)
            credited = next((dict(m.counters) for m in st.members if m.member_id == old), credited)
        except grpc.aio.AioRpcError:
            pass
        for k, v in credited.items():
            self._base[k] = self._base.get(k, 0) + v
        await self._register()

    def _heartbeat_request(self) -> pb.HeartbeatRequest:
        # Rebuilt on every attempt: after a re-registration the member id and the counter base both change.
        if self.report is not None:
            try:
                self.report(self)
            except Exception:
                log.exception("report for the coordinator failed")
        counters = {k: int(v) - self._base.get(k, 0) for k, v in list(self.counters.items())}
        return pb.HeartbeatRequest(member_id=self.member_id, policy_version=self.policy_version, counters=counters,
                                   gauges=dict(self.gauges), last_error=self.last_error, error_count=self.error_count)

    async def _send_heartbeat(self) -> None:
        sent: list[pb.HeartbeatRequest] = []

        def attempt():
            sent.append(self._heartbeat_request())
            return self._stub.Heartbeat(sent[-1], timeout=self._timeout)

        r = await self._call(attempt)
        self._acked = dict(sent[-1].counters)
        self.may_proceed = r.may_proceed
        self._set_view(r.view)

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self._send_heartbeat()
            except grpc.aio.AioRpcError as e:
                log.warning("heartbeat failed: %s %s", e.code().name, e.details())
            await asyncio.sleep(self._heartbeat_s)

    async def _watch_loop(self) -> None:
        backoff = Backoff(0.5, 2.0)
        while True:
            try:
                async for view in self._stub.Watch(pb.WatchRequest(member_id=self.member_id)):
                    self._set_view(view)
                    backoff.reset()
            except grpc.aio.AioRpcError as e:
                if not retryable(e):
                    log.warning("watch failed: %s %s", e.code().name, e.details())
            if self.stopping:
                return
            await backoff.sleep()


async def serve_registered(server, register=None, on_ready=None) -> None:
    """A role's serving life: start ``server`` (an object with ``start``/``stop`` and an ``rpc`` RpcServer), stop on
    SIGTERM/SIGINT, join the run (``register()`` returns its RoleRegistration; None: standalone), serve until
    stopped, then leave the run before the server goes. Memory and critic share it."""
    await server.start()
    server.rpc.stop_on_signals()
    if on_ready:
        on_ready(server)
    registration = await register() if register is not None else None
    try:
        await server.rpc.wait()
    finally:
        if registration is not None:
            await registration.close()
        await server.stop()


@contextlib.contextmanager
def _on_stop_signals(callback):
    """While inside: SIGTERM/SIGINT also call ``callback()``, then the handler that was installed.

    Only in the main thread (where Python runs signal handlers) and only over a Python-level handler:
    a signal left at its default action ends the process anyway, an ignored one stays ignored. An
    asyncio handler (loop.add_signal_handler) keeps working: the loop learns of the signal through its
    wakeup fd, whatever the Python-level handler is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    installed: dict[int, tuple] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def chained(signum, frame, previous=previous):
            callback()
            previous(signum, frame)

        installed[sig] = (previous, chained)
        signal.signal(sig, chained)
    try:
        yield
    finally:
        for sig, (previous, chained) in installed.items():
            if signal.getsignal(sig) is chained:   # unless someone replaced it meanwhile
                signal.signal(sig, previous)


class CoordinatorClient:
    """Operator-side calls (status, pause/resume/stop)."""

    def __init__(self, address: str, timeout_s: float = 5.0, *, channel_config: ChannelConfig | None = None):
        self.address, self.timeout, self.channel_config = address, timeout_s, channel_config

    async def status(self, *, include_dead: bool = False, history_points: int = 0) -> pb.ClusterStatus:
        async with make_channel(self.address, self.channel_config) as ch:
            return await coordinator_pb2_grpc.CoordinatorServiceStub(ch).GetStatus(
                pb.GetStatusRequest(include_dead=include_dead, history_points=history_points), timeout=self.timeout)

    async def set_run_state(self, state: str, reason: str = "") -> pb.RunView:
        if state not in RUN_STATES:
            raise ValueError(f"state must be one of {sorted(RUN_STATES)}, got {state!r}")
        async with make_channel(self.address, self.channel_config) as ch:
            return await coordinator_pb2_grpc.CoordinatorServiceStub(ch).SetRunState(
                pb.SetRunStateRequest(run_state=RUN_STATES[state], reason=reason), timeout=self.timeout)
