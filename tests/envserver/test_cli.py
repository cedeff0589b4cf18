"""The real `atlasrl envserver` process: graceful SIGTERM, and the debug client against it."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from typer.testing import CliRunner

from atlasrl.cli.main import build
from atlasrl.clients.env import EnvClient
from atlasrl.rpc import RemoteError, make_channel
from tests.envserver.conftest import ThreadedServer

pytestmark = pytest.mark.timeout(120)
ATLASRL = [sys.executable, "-m", "atlasrl.cli.main"]


def _children(pid: int) -> list[int]:
    """Multiprocessing spawn children (env workers) of ``pid``."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and b"spawn_main" in (entry / "cmdline").read_bytes():
                kids.append(int(entry.name))
    return kids


@pytest.fixture
def envserver_proc():
    proc = subprocess.Popen(ATLASRL + ["envserver", "--port", "0", "--print-port", "--workers", "1", "--env", "frozenlake,sokoban",
                                       "--grace", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        pytest.fail(f"envserver did not start: {line!r} {proc.stderr.read()}")
    yield proc, f"127.0.0.1:{int(line.split()[1])}"
    if proc.poll() is None:
        proc.kill()
        proc.wait()


async def test_sigterm_drains_streams_and_stops_workers(envserver_proc):
    proc, addr = envserver_proc
    workers = _children(proc.pid)
    assert workers, "the worker process should be a child of the server"
    async with EnvClient(addr) as c:
        h, _ = await c.open("frozenlake", seed=3)
        await c.reset(h)
        async with make_channel(addr) as ch:
            r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="atlasrl.v1.EnvService"))
            assert r.status == health_pb2.HealthCheckResponse.SERVING
        assert (await c.step_one(h, "Wait")).step == 1
        proc.send_signal(signal.SIGTERM)  # (test_lifecycle checks that a request in flight is still answered)
        with pytest.raises(RemoteError) as e:
            for _ in range(200):
                await c.reset(h)
                await asyncio.sleep(0.02)
        assert e.value.status_code == grpc.StatusCode.UNAVAILABLE and "shutting down" in e.value.message
    assert await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30) == 0
    assert not [p for p in workers if _running(p)], "env workers must stop with the server"


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_a_killed_server_takes_a_stuck_worker_with_it(envserver_proc):
    proc, addr = envserver_proc
    [worker] = _children(proc.pid)
    async with EnvClient(addr) as c:
        h, _ = await c.open("frozenlake", seed=3)
        await c.reset(h)
    # A stopped worker stands for one stuck in an env call: it never reads its pipe again, so only the
    # kernel's parent-death signal can end it (an idle worker also sees the pipe's EOF).
    os.kill(worker, signal.SIGSTOP)
    try:
        proc.kill()
        proc.wait()
        for _ in range(600):
            if not _running(worker):
                break
            await asyncio.sleep(0.1)
        assert not _running(worker), "the env worker outlived its SIGKILLed server"
    finally:
        if _running(worker):
            os.kill(worker, signal.SIGKILL)


def test_debug_envs_and_debug_env_against_a_live_server(tmp_path):
    app = build()
    runner = CliRunner()
    with ThreadedServer(envs=["frozenlake", "sokoban"]) as server:
        addr = server.address
        out = runner.invoke(app, ["debug", "envs", "--addr", addr], terminal_width=200)
        assert out.exit_code == 0, out.output
        assert "frozenlake" in out.output and "sokoban" in out.output and "maniskill" not in out.output
        frames = tmp_path / "frames"
        out = runner.invoke(app, ["debug", "env", "--addr", addr, "--env", "frozenlake", "--seed", "3", "--actions", "Right,Down,Down",
                                  "--save-frames", str(frames), "--config", "size=4"], terminal_width=200)
        assert out.exit_code == 0, out.output
        assert "terminated" in out.output and "hole" in out.output  # seed 3: Right, Down, Down falls into the hole at (2, 1)
        saved = sorted(p.name for p in frames.iterdir())
        assert saved == ["frame_000.png", "frame_001.png", "frame_002.png", "frame_003.png"]
        assert Image.open(frames / "frame_000.png").size == (128, 128)
        out = runner.invoke(app, ["debug", "env", "--addr", addr, "--env", "sokoban", "--steps", "4", "--seed", "1"], terminal_width=200)
        assert out.exit_code == 0 and "(reset)" in out.output, out.output
        out = runner.invoke(app, ["debug", "env", "--addr", addr, "--env", "nope", "--steps", "1"])
        assert out.exit_code == 1 and "NOT_FOUND" in out.output and "not served here" in out.output
