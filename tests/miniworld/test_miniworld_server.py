"""MiniWorld envs through real env servers on loopback: the compliance suite, a worker process, dm_env_rpc,
a scripted navigator reaching the goal, and bad configs answered with a status that names the key."""
import grpc
import numpy as np
import pytest
from dm_env_rpc.v1 import connection as dm_connection
from dm_env_rpc.v1 import dm_env_adaptor, error
from miniworld_scripted import toward

from atlasrl.clients.env import EnvClient
from atlasrl.rpc import RemoteError
from tests.envserver.compliance import EnvServiceCompliance
from tests.envserver.conftest import ThreadedServer

pytestmark = pytest.mark.usefixtures("miniworld_ready")

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]
SMALL = {"image_size": "32", "max_steps": "30"}


class TestMiniWorldService(EnvServiceCompliance):
    env_id = "miniworld:Hallway"
    config = SMALL
    valid_action = "move forward"

    async def test_listed_with_a_spec(self, client):
        """Prefix backends list id and family until an instance with default config was opened (sessions.py)."""
        assert self.env_id in {s.env_id for s in await client.list_envs()}
        await client.open(self.env_id, {}, seed=0)
        await super().test_listed_with_a_spec(client)


async def _navigate(client: EnvClient, handle: int, seed: int):
    obs = await client.reset(handle, seed=seed)
    [goal] = [tuple(e.position) for e in obs.entities if e.kind == "goal"]
    turns = 0
    while not obs.done:
        obs = await client.step_one(handle, toward(obs.info["position"], obs.info["heading_deg"], goal))
        turns += 1
    return obs, turns


async def test_scripted_policy_reaches_the_goal_through_a_worker_process(start_server):
    server = await start_server(workers=1, envs=["miniworld"])
    async with EnvClient(server.address) as client:
        handle, spec = await client.open("miniworld:Hallway", {"top_view": "true", "top_view_size": "64"}, seed=0)
        assert list(spec.camera_names) == ["first_person", "top_down"] and spec.grid_rows == 4
        for seed in (1, 2):
            obs, turns = await _navigate(client, handle, seed)
            assert obs.success and obs.info["terminal_cause"] == "success"
            assert obs.reward == 1.0 and 5 < turns < 250
            assert [i.name for i in obs.proto.images] == ["first_person", "top_down"]
            assert obs.images[1].shape == (64, 64, 3) and obs.images[1].std() > 5


async def test_bad_config_gets_a_status_naming_the_key(start_server):
    server = await start_server()
    async with EnvClient(server.address) as client:
        for config, key in [({"image_size": "4096"}, "image_size"), ({"turn_stepp": "30"}, "turn_stepp"),
                            ({"top_view": "maybe"}, "top_view")]:
            with pytest.raises(RemoteError) as e:
                await client.open("miniworld:Hallway", config)
            assert e.value.code == INVALID_ARGUMENT and key in e.value.message
        with pytest.raises(RemoteError) as e:
            await client.open("miniworld:Atlantis")
        assert e.value.code == NOT_FOUND and "Atlantis" in e.value.message
        handle, _ = await client.open("miniworld:OneRoomS6", SMALL, seed=0)     # the server goes on serving
        assert (await client.reset(handle)).images[0].shape == (32, 32, 3)


def test_dm_env_rpc_adaptor_plays_miniworld():
    with ThreadedServer(envs=["miniworld"]) as server:
        conn = dm_connection.Connection(grpc.insecure_channel(server.address))
        env, _world = dm_env_adaptor.create_and_join_world(
            conn, create_world_settings={"env_id": "miniworld:OneRoomS6", "seed": 3, "config": SMALL},
            join_world_settings={}, requested_observations=["RGB", "text", "agent"])
        assert env.observation_spec()["RGB"].shape == (32, 32, 3)
        first = env.reset().observation["RGB"]
        ts = env.step({"action": "turn left, turn left, turn left"})
        assert not np.array_equal(first, ts.observation["RGB"]) and "You turned left (3x)." in ts.observation["text"]
        with pytest.raises(error.DmEnvRpcError) as e:
            dm_env_adaptor.create_world(conn, {"env_id": "miniworld:Hallway", "config.image_size": "9999"})
        assert e.value.code == INVALID_ARGUMENT and "image_size" in e.value.message
        env.close()
        conn.close()
