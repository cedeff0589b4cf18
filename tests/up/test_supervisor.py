"""The process supervisor with real child processes: readiness, restart on failure, clean and forced stop."""
import asyncio
import os
import signal
import sys
import time

import pytest

from atlasrl.up.ports import free_ports
from atlasrl.up.supervisor import RoleFailed, RoleProcess, Supervisor

# A child that serves gRPC health on the given port (like every role), optionally ignoring SIGTERM.
SERVE = r"""
import asyncio, signal, sys
from atlasrl.metrics import Metrics
from atlasrl.rpc import RpcServer, ServerConfig
async def main():
    s = RpcServer(ServerConfig(port=int(sys.argv[1])), Metrics("child"))
    await s.start()
    if sys.argv[2] == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        s.stop_on_signals()
    print("serving", flush=True)
    await s.wait()
asyncio.run(main())
"""


def child(name, port, mode="polite", restart=True):
    return RoleProcess(name, "test", [sys.executable, "-c", SERVE, str(port), mode], port=port, restart=restart)


async def wait_until(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_restart_after_kill_on_same_port_then_clean_stop(tmp_path):
    sup = Supervisor(tmp_path / "logs", max_restarts=3, stop_timeout_s=30)
    (port,) = free_ports(1)
    await sup.start(child("a", port))
    first_pid = sup.processes["a"].proc.pid
    sup.signal("a", signal.SIGKILL)
    await wait_until(lambda: sup.processes["a"].restarts == 1 and sup.alive("a") and sup.processes["a"].proc.pid != first_pid)
    await sup._wait_ready(sup.processes["a"])  # serving again on the same port
    await sup.stop_all()
    assert sup.processes["a"].exits == [-signal.SIGKILL, 0]  # the second run stopped cleanly on SIGTERM
    log = (tmp_path / "logs" / "a.log").read_text()
    assert log.count("=== ") == 2 and log.count("\nserving\n") == 2
    assert any("restart 1/3" in e for _, e in sup.events)


async def test_stubborn_child_is_killed_after_timeout(tmp_path):
    sup = Supervisor(tmp_path / "logs", stop_timeout_s=0.5)
    (port,) = free_ports(1)
    await sup.start(child("s", port, "stubborn"))
    await sup.stop_all()
    assert sup.processes["s"].exits == [-signal.SIGKILL]
    assert any("ignored SIGTERM" in e for _, e in sup.events)


async def test_restart_budget_spent_sets_failed(tmp_path):
    sup = Supervisor(tmp_path / "logs", max_restarts=1)
    crash = RoleProcess("c", "test", [sys.executable, "-c", "import time; time.sleep(0.3); raise SystemExit(3)"])
    await sup.start(crash)
    await asyncio.wait_for(sup.failed.wait(), 20)
    assert sup.processes["c"].exits == [3, 3]
    await sup.stop_all()


async def test_child_dying_before_ready_is_reported(tmp_path):
    sup = Supervisor(tmp_path / "logs")
    (port,) = free_ports(1)
    bad = RoleProcess("bad", "test", [sys.executable, "-c", "import sys; print('no such flag', file=sys.stderr); sys.exit(2)"], port=port)
    with pytest.raises(RoleFailed, match="bad exited with code 2 before serving"):
        await sup.start(bad)
    assert "no such flag" in (tmp_path / "logs" / "bad.log").read_text()
    await sup.stop_all()


async def test_stop_all_of_keeps_the_others(tmp_path):
    sup = Supervisor(tmp_path / "logs", stop_timeout_s=10)
    p1, p2 = free_ports(2)
    await asyncio.gather(sup.start(child("x", p1)), sup.start(child("y", p2)))
    await sup.stop_all_of(["x"])
    await asyncio.sleep(1.0)
    assert not sup.alive("x") and sup.alive("y") and sup.processes["x"].restarts == 0  # not restarted
    await sup.stop_all()
    assert not sup.alive("y")
    with pytest.raises(ProcessLookupError):
        os.kill(sup.processes["y"].proc.pid, 0)


async def test_orphaned_grandchild_is_cleared_before_restart(tmp_path):
    """Like torchrun: the launcher is killed, its worker would keep the port; the group is cleared first."""
    sup = Supervisor(tmp_path / "logs", max_restarts=2, stop_timeout_s=10)
    (port,) = free_ports(1)
    launcher = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2], 'polite']);"
                " time.sleep(3600)")
    spec = RoleProcess("l", "test", [sys.executable, "-c", launcher, SERVE, str(port)], port=port)
    await sup.start(spec)
    import psutil

    worker = psutil.Process(spec.proc.pid).children()[0]
    sup.signal("l", signal.SIGKILL)
    await wait_until(lambda: sup.processes["l"].restarts == 1)
    assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
    await sup.stop_all()


async def test_a_role_starts_while_grpc_channels_are_open(tmp_path):
    """Spawning goes through exec (the lifeline), never Python between fork and exec: gRPC's fork handlers abort
    the child while channels are open."""
    from atlasrl.rpc import make_channel

    sup = Supervisor(tmp_path / "logs")
    (port,) = free_ports(1)
    await sup.start(child("g", port))
    async with make_channel(f"127.0.0.1:{port}") as ch:  # like `atlasrl up`: live channels while spawning
        await sup._wait_ready(sup.processes["g"])
        spec = RoleProcess("n", "test", [sys.executable, "-c", "import time; time.sleep(30)"])
        await sup.start(spec)
        await asyncio.sleep(0.5)
        assert sup.alive("n")
        del ch
    await sup.stop_all()
