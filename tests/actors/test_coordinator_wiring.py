"""Actor with --coordinator only: env servers and learner from the assignment, counters in heartbeats, pause/resume."""
import asyncio

from atlasrl.actors.actor import start_actor, stop_actor
from atlasrl.clients.coordinator import CoordinatorClient, RoleRegistration
from atlasrl.coordinator.config import CoordinatorConfig
from atlasrl.coordinator.server import CoordinatorServer
from atlasrl.rpc import ServerConfig

from .conftest import actor_config


async def test_actor_follows_the_coordinator(tiny_engine, env_server, learner, tmp_path):
    coord = CoordinatorServer(CoordinatorConfig(server=ServerConfig(port=0), state_dir=tmp_path, lease_ttl_s=3))
    await coord.start()
    others = [
        RoleRegistration(coord.address, role="envserver", name="env-0", address=env_server.address, capacity=16,
                         capabilities=["frozenlake"]),
        RoleRegistration(coord.address, role="learner", name="learner", address=learner.address),
    ]
    for reg in others:
        await reg.start()
    parts = None
    try:
        parts = await start_actor(actor_config(coordinator=coord.address), engine=tiny_engine)
        assert [link.target for link in parts.loop.links] == [env_server.address]
        assert parts.sender is not None and parts.sender.target == learner.address
        run = asyncio.create_task(parts.loop.run(max_episodes=10_000))
        while parts.loop.finished < 4:
            await asyncio.sleep(0.02)
        client = CoordinatorClient(coord.address)
        await client.set_run_state("paused", "test")
        await asyncio.sleep(1.5)                     # the Watch stream brings the new state
        steps = parts.loop.env_steps
        await asyncio.sleep(1.0)
        assert parts.loop.env_steps == steps, "the actor kept stepping while the run was paused"
        await client.set_run_state("running")
        while parts.loop.env_steps == steps:
            await asyncio.sleep(0.05)
        await asyncio.sleep(parts.registration._heartbeat_s + 0.5)
        status = await client.status()
        actor = next(m for m in status.members if m.name == parts.registration.request.name)
        assert actor.counters["env_steps"] > 0 and actor.counters["episodes"] >= 4
        await client.set_run_state("stopping")
        await asyncio.wait_for(run, 30)              # STOPPING ends the rollout loop
    finally:
        if parts is not None:
            await stop_actor(parts)
        for reg in others:
            await reg.close()
        await coord.stop(0)
