"""Server keepalive drops a frozen peer: a SIGSTOPped client's stream ends on the server, a live client's does not.

A stopped process cannot answer the server's HTTP/2 PING (its kernel still ACKs TCP, so nothing
below HTTP/2 notices), so only the server's own keepalive pings (ServerConfig.keepalive_time_s /
keepalive_timeout_s) free its stream. Both clients are real processes on real loopback gRPC.
"""
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from atlasrl.metrics import Metrics
from atlasrl.rpc import RpcServer, ServerConfig
from tests.echo_services import ENV, EchoEnv

ROOT = Path(__file__).resolve().parents[1]

# Opens one Session, proves it works, says so, then sends one request a second while it runs (a live peer).
CLIENT = """
import asyncio, sys
from atlasrl.rpc import make_channel
from atlasrl.v1 import env_pb2, env_pb2_grpc

async def main():
    async with make_channel(sys.argv[1]) as ch:
        call = env_pb2_grpc.EnvServiceStub(ch).Session()
        n = 0
        while True:
            n += 1
            await call.write(env_pb2.EnvRequest(request_id=n, reset=env_pb2.ResetRequest()))
            assert (await call.read()).request_id == n
            if n == 1:
                print("SESSION", flush=True)
            await asyncio.sleep(1.0)

asyncio.run(main())
"""


async def wait_for(pred, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def start_client(address: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, address], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = await asyncio.to_thread(proc.stdout.readline)
    assert line.strip() == "SESSION", f"client exited with {proc.poll()} before opening its session"
    return proc


async def test_keepalive_drops_a_sigstopped_client_but_keeps_a_live_one():
    """Keepalive 1 s + 1 s: the frozen client goes within seconds (before the fix: after keepalive time + gRPC's
    60 s default ping timeout, whatever keepalive_timeout said); the live client keeps its stream meanwhile."""
    echo = EchoEnv()
    server = RpcServer(ServerConfig(keepalive_time_s=1.0, keepalive_timeout_s=1.0), Metrics("test"))
    server.add(echo, ENV)
    await server.start()
    frozen = live = None
    try:
        frozen = await start_client(server.address)
        live = await start_client(server.address)
        assert echo.live == 2
        os.kill(frozen.pid, signal.SIGSTOP)
        await wait_for(lambda: echo.live == 1, "the frozen client's session was not dropped by keepalive")
        assert frozen.poll() is None and live.poll() is None   # nobody exited: keepalive ended the session
        await asyncio.sleep(3 * (1.0 + 1.0))                   # several keepalive rounds: the live peer keeps its stream
        assert echo.live == 1 and live.poll() is None
    finally:
        for proc in (frozen, live):
            if proc is not None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait()
        await server.stop(0)
