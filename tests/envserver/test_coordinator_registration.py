"""With --coordinator the env server joins the run: registered as envserver, heartbeats carry env steps."""
from __future__ import annotations

import asyncio

from atlasrl.clients.coordinator import CoordinatorClient
from atlasrl.clients.env import EnvClient
from atlasrl.coordinator.config import CoordinatorConfig
from atlasrl.coordinator.server import CoordinatorServer
from atlasrl.envserver.config import EnvServerConfig
from atlasrl.envserver.server import serve
from atlasrl.rpc import ServerConfig
from atlasrl.v1 import coordinator_pb2 as pb


async def _until(predicate, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.1)


async def test_registers_reports_steps_and_deregisters(tmp_path):
    coordinator = CoordinatorServer(CoordinatorConfig(server=ServerConfig(port=0), state_dir=tmp_path / "state", lease_ttl_s=1.0))
    await coordinator.start()
    ready: asyncio.Future = asyncio.get_running_loop().create_future()
    cfg = EnvServerConfig(port=0, workers=0, envs=["frozenlake"], max_envs=7, coordinator=coordinator.rpc.address)
    serving = asyncio.ensure_future(serve(cfg, on_ready=ready.set_result))
    server = await asyncio.wait_for(ready, 30)
    status = CoordinatorClient(coordinator.rpc.address)
    try:
        async def member():
            return next((m for m in (await status.status()).members if m.role == pb.ROLE_ENVSERVER), None)

        m = await _until(member)
        assert m is not None and m.address == server.address and m.capacity == 7 and list(m.capabilities) == ["frozenlake"]
        async with EnvClient(server.address) as c:
            h, _ = await c.open("frozenlake", seed=0)
            await c.reset(h)
            for _ in range(5):
                await c.step_one(h, "Wait")

            async def stepped():
                m = await member()
                return m if m and m.counters.get("env_steps") == 5 and m.gauges.get("live_envs") == 1 else None

            assert await _until(stepped), "heartbeats should carry env_steps=5 and live_envs=1"
    finally:
        await server.stop(0)
        await asyncio.wait_for(serving, 30)
        assert await _until(lambda: _none(member)), "the server deregisters when it stops"
        await coordinator.stop(0)


async def _none(member):
    return (await member()) is None
