"""The flags every role CLI shares (atlasrl/cli/common.py): offered by each role, and the session cap reaching real servers."""
import subprocess
import sys

import grpc
import pytest
from typer.testing import CliRunner

from atlasrl.cli.main import build
from atlasrl.clients.env import EnvClient, EnvStreamClosed
from atlasrl.rpc import make_channel
from atlasrl.v1 import coordinator_pb2, coordinator_pb2_grpc

pytestmark = pytest.mark.timeout(120)

SECURITY = ["--tls-cert", "--tls-key", "--tls-ca", "--mtls", "--token-file", "--insecure"]
SESSIONS = ["--max-sessions-per-client", "--session-idle-timeout-s"]
FLAGS = {"envserver": ["--print-port", "--log-level", *SECURITY, *SESSIONS],
         "memory": ["--print-port", "--log-level", *SECURITY, *SESSIONS],
         "coordinator": ["--log-level", *SECURITY, *SESSIONS],
         "learner": [*SECURITY, *SESSIONS],
         "actor": ["--log-level", *SECURITY]}


@pytest.mark.parametrize("role", sorted(FLAGS))
def test_every_role_offers_its_shared_flags(role):
    out = CliRunner().invoke(build(), [role, "--help"], terminal_width=400, env={"COLUMNS": "400"})
    assert out.exit_code == 0, out.output
    offered = {word for line in out.output.splitlines() for word in line.replace("│", " ").split() if word.startswith("--")}
    assert set(FLAGS[role]) <= offered, sorted(set(FLAGS[role]) - offered)


def _start(argv: list[str], ready: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "atlasrl.cli.main", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if ready not in line:
        proc.kill()
        pytest.fail(f"{argv[0]} did not start: {line!r} {proc.stderr.read()}")
    return proc, line


async def test_envserver_session_cap_flag():
    proc, line = _start(["envserver", "--port", "0", "--workers", "0", "--print-port", "--max-sessions-per-client", "1"], "PORT ")
    addr = f"127.0.0.1:{int(line.split()[1])}"
    try:
        async with EnvClient(addr) as first:
            await first.open("frozenlake", seed=1)      # answered: the first stream holds the client's one session
            async with EnvClient(addr) as second:
                with pytest.raises(EnvStreamClosed) as e:
                    await second.open("frozenlake", seed=2)
                assert e.value.status_code == grpc.StatusCode.RESOURCE_EXHAUSTED and "1 live sessions" in e.value.message
        async with EnvClient(addr) as again:            # the first stream closed: its session is free again
            await again.open("frozenlake", seed=3)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


async def test_coordinator_session_cap_flag(tmp_path):
    proc, line = _start(["coordinator", "--port", "0", "--state-dir", str(tmp_path), "--max-sessions-per-client", "1"],
                        "serving on ")
    addr = line.split("serving on ")[1].split()[0]
    try:
        async with make_channel(addr) as ch:
            stub = coordinator_pb2_grpc.CoordinatorServiceStub(ch)
            first = stub.Watch(coordinator_pb2.WatchRequest())
            await first.read()                          # the first RunView: this Watch holds the session
            second = stub.Watch(coordinator_pb2.WatchRequest())
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await second.read()
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            first.cancel()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
