"""Run role processes on this machine: start in order, wait for health, restart on failure, stop cleanly.

    sup = Supervisor(logs_dir, max_restarts=5, stop_timeout_s=15)
    await sup.start(RoleProcess("coordinator", "coordinator", argv, port=50050))
    ...
    await sup.stop_all()      # SIGTERM in reverse start order, wait, SIGKILL stragglers

Each child runs in its own session (process group) so a terminal Ctrl-C reaches only
the supervisor, which then stops children in order; stragglers are killed with their
whole group (torchrun's workers included). One log file per process, appended across
restarts. A child that exits while the supervisor is not stopping is restarted on the
same ports with exponential backoff, at most ``max_restarts`` times. Every child is started
through ``atlasrl.lifeline``'s exec entry, so it dies with the supervisor even when the supervisor
is SIGKILLed (Linux parent-death signal).
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atlasrl.lifeline import lifeline_argv
from atlasrl.rpc import ChannelConfig, make_channel

log = logging.getLogger("atlasrl.up")


@dataclass
class RoleProcess:
    name: str                  # unique: "envserver-0"
    role: str                  # "envserver"
    argv: list[str]
    port: int | None = None    # gRPC port to health-check; None = ready once started
    restart: bool = True
    env: dict[str, str] = field(default_factory=dict)
    stop_timeout_s: float | None = None  # None: the supervisor's; the learner gets longer (final checkpoint)
    # filled in while running
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    exits: list[int] = field(default_factory=list)
    started_at: float = 0.0


class RoleFailed(RuntimeError):
    """A role did not become ready, or died more often than allowed."""


class Supervisor:
    def __init__(self, logs_dir: Path, *, max_restarts: int = 5, stop_timeout_s: float = 15.0, ready_timeout_s: float = 180.0,
                 channel_config: ChannelConfig | None = None):
        self.logs_dir = Path(logs_dir)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.max_restarts = max_restarts
        self.stop_timeout_s = stop_timeout_s
        self.ready_timeout_s = ready_timeout_s
        self.channel_config = channel_config         # health checks (TLS settings of a secure run)
        self.processes: dict[str, RoleProcess] = {}
        self.events: list[tuple[float, str]] = []   # (time, text) for the display and summary
        self.failed = asyncio.Event()               # set when a role exhausted its restarts
        self._stopping = False
        self._watchers: dict[str, asyncio.Task] = {}

    def note(self, text: str) -> None:
        self.events.append((time.time(), text))
        log.warning(text)

    async def start(self, spec: RoleProcess, *, wait_ready: bool = True) -> None:
        self.processes[spec.name] = spec
        await self._spawn(spec)
        if wait_ready:
            await self._wait_ready(spec)
        self._watchers[spec.name] = asyncio.create_task(self._watch(spec))

    async def _spawn(self, spec: RoleProcess) -> None:
        logf = open(self.logs_dir / f"{spec.name}.log", "ab", buffering=0)  # noqa: SIM115 - handed to the child, closed below
        logf.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} start #{spec.restarts}: {' '.join(spec.argv)}\n".encode())
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env}
        # Through the lifeline exec (a command, not preexec_fn: Python code between fork and exec runs gRPC's fork
        # handlers in the child, which abort while channels are open): the kernel SIGKILLs the role if this
        # process dies, even SIGKILLed with no chance to stop anything (the role's own children see to theirs).
        # CPU priority is each role's own setting (actor.nice, atlasrl/priority.py), applied in the role.
        argv = lifeline_argv(os.getpid(), spec.argv)
        spec.proc = await asyncio.create_subprocess_exec(*argv, stdout=logf, stderr=asyncio.subprocess.STDOUT,
                                                         stdin=asyncio.subprocess.DEVNULL, env=env, start_new_session=True)
        logf.close()  # the child holds its own descriptor
        spec.started_at = time.time()

    async def _wait_ready(self, spec: RoleProcess) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        if spec.port is None:
            await asyncio.sleep(0.2)
            if spec.proc.returncode is not None:
                raise RoleFailed(f"{spec.name} exited with code {spec.proc.returncode} at start; see {self.log_path(spec.name)}")
            return
        async with make_channel(f"127.0.0.1:{spec.port}", self.channel_config) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while True:
                if spec.proc.returncode is not None:
                    raise RoleFailed(f"{spec.name} exited with code {spec.proc.returncode} before serving; "
                                     f"see {self.log_path(spec.name)}")
                try:
                    r = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                    if r.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RoleFailed(f"{spec.name} not serving on port {spec.port} after {self.ready_timeout_s:.0f}s; "
                                     f"see {self.log_path(spec.name)}")
                await asyncio.sleep(0.2)

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    async def _watch(self, spec: RoleProcess) -> None:
        while True:
            code = await spec.proc.wait()
            spec.exits.append(code)
            # Children of a dead role (torchrun's workers after its launcher was killed) would keep its
            # ports and keep training: clear the whole process group before anything restarts.
            _kill_group(spec.proc.pid)
            if self._stopping:
                return
            if not spec.restart or code == 0:  # 0: the role finished its work (e.g. the run is stopping)
                self.note(f"{spec.name} exited with code {code}")
                return
            if spec.restarts >= self.max_restarts:
                self.note(f"{spec.name} exited with code {code}; restart budget ({self.max_restarts}) spent: aborting the run")
                self.failed.set()
                return
            spec.restarts += 1
            delay = min(0.5 * 2 ** (spec.restarts - 1), 10.0)
            self.note(f"{spec.name} exited with code {code}; restart {spec.restarts}/{self.max_restarts} in {delay:.1f}s")
            await asyncio.sleep(delay)
            if self._stopping:
                return
            await self._spawn(spec)
            try:
                await self._wait_ready(spec)
            except RoleFailed as e:
                self.note(str(e))  # the loop sees the exit (or a hung child is killed by stop_all)

    def signal(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send a signal to one role process (fault injection, `atlasrl up` tests). Returns its pid."""
        proc = self.processes[name].proc
        os.kill(proc.pid, sig)
        return proc.pid

    def alive(self, name: str) -> bool:
        p = self.processes[name].proc
        return p is not None and p.returncode is None

    async def stop_all(self, order: list[str] | None = None) -> None:
        """SIGTERM each process (reverse start order by default), wait up to stop_timeout_s, then SIGKILL its group."""
        self._stopping = True
        names = order or list(reversed(self.processes))
        for name in names:
            await self._stop_one(self.processes[name])
        # Every process has exited: let each watcher record its exit code (it returns at once while stopping)
        # before cancelling the ones still asleep in a restart backoff.
        watchers = list(self._watchers.values())
        if watchers:
            await asyncio.wait(watchers, timeout=1.0)
        for t in watchers:
            t.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)

    async def stop_all_of(self, names: list[str]) -> None:
        """Stop these processes for good (no restart), in the given order; the others keep running."""
        for name in names:
            spec = self.processes.get(name)
            if spec is None:
                continue
            spec.restart = False
            await self._stop_one(spec)

    async def _stop_one(self, spec: RoleProcess) -> None:
        proc = spec.proc
        if proc is None or proc.returncode is not None:
            return
        timeout = self.stop_timeout_s if spec.stop_timeout_s is None else min(spec.stop_timeout_s, 4 * self.stop_timeout_s)
        try:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), timeout)
        except ProcessLookupError:
            return
        except TimeoutError:
            self.note(f"{spec.name} ignored SIGTERM for {timeout:.0f}s: killing its process group")
        _kill_group(proc.pid)  # children of the role (torchrun workers, engine subprocesses) share its group
        await proc.wait()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
