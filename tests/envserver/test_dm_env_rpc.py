"""DeepMind's dm_env_rpc client, its dm_env adaptor and its compliance suites drive our envs unchanged."""
from __future__ import annotations

import asyncio

import dm_env
import grpc
import numpy as np
import pytest
from dm_env_rpc.v1 import connection as dm_connection
from dm_env_rpc.v1 import dm_env_adaptor, dm_env_rpc_pb2, error, tensor_utils
from dm_env_rpc.v1.compliance import create_destroy_world, join_leave_world, reset, reset_world, step

from tests.envserver.conftest import ThreadedServer

_server: ThreadedServer | None = None


@pytest.fixture(scope="module", autouse=True)
def dm_server():
    """One server for the module; autouse so the absltest classes below get it too."""
    global _server
    with ThreadedServer() as _server:
        yield _server


@pytest.fixture
def address(dm_server):
    return dm_server.address


def _connect(addr: str) -> dm_connection.Connection:
    return dm_connection.Connection(grpc.insecure_channel(addr))


def test_adaptor_plays_an_episode_to_the_goal_and_restarts(address):
    conn = _connect(address)
    env, world = dm_env_adaptor.create_and_join_world(
        conn, create_world_settings={"env_id": "frozenlake", "seed": 3, "config": {"size": 4}}, join_world_settings={},
        requested_observations=["RGB", "text", "success", "agent", "info"])
    assert env.observation_spec()["RGB"].shape == (128, 128, 3) and env.observation_spec()["RGB"].dtype == np.uint8
    assert env.action_spec()["action"].dtype == np.str_ or env.action_spec()["action"].dtype == object
    ts = env.reset()
    assert ts.step_type == dm_env.StepType.FIRST and ts.observation["RGB"].shape == (128, 128, 3)
    assert "P" in ts.observation["text"] and tuple(ts.observation["agent"]) == (0, 0)
    rewards = []
    for action in ["Right", "Right", "Down", "Down", "Right", "Down"]:
        ts = env.step({"action": action})
        rewards.append(ts.reward)
    assert ts.step_type == dm_env.StepType.LAST and ts.observation["success"] and ts.discount == 0.0
    assert rewards[-1] > 0 and tuple(ts.observation["agent"]) == (3, 3)
    ts = env.step({"action": "Up"})  # after LAST: a new sequence starts, the action is ignored
    assert ts.step_type == dm_env.StepType.FIRST and tuple(ts.observation["agent"]) == (0, 0)
    ts = env.step({"action": "Fly"})  # malformed text: penalised no-op, the episode goes on
    assert ts.step_type == dm_env.StepType.MID and '"action_is_valid": false' in ts.observation["info"]
    env.close()
    conn.send(dm_env_rpc_pb2.DestroyWorldRequest(world_name=world))
    conn.close()


def test_errors_come_back_as_status_and_the_stream_goes_on(address):
    conn = _connect(address)
    with pytest.raises(error.DmEnvRpcError) as e:
        dm_env_adaptor.create_world(conn, {"env_id": "frozenpond"})
    assert e.value.code == grpc.StatusCode.NOT_FOUND.value[0] and "frozenpond" in e.value.message
    with pytest.raises(error.DmEnvRpcError, match="Step needs a joined world"):
        conn.send(dm_env_rpc_pb2.StepRequest())
    with pytest.raises(error.DmEnvRpcError, match="seed"):
        dm_env_adaptor.create_world(conn, {"env_id": "sokoban", "seed": "seven"})
    name = dm_env_adaptor.create_world(conn, {"env_id": "sokoban", "seed": 7})
    other = _connect(address)
    dm_env_adaptor.join_world(conn, name, {})
    with pytest.raises(error.DmEnvRpcError, match="already joined"):
        dm_env_adaptor.join_world(other, name, {})
    with pytest.raises(error.DmEnvRpcError, match="leave it"):
        conn.send(dm_env_rpc_pb2.DestroyWorldRequest(world_name=name))
    other.close()
    conn.close()


# --- DeepMind's compliance suites, adopted with tiny subclasses --------------------------
def _world(conn, env_id: str = "frozenlake") -> str:
    return conn.send(dm_env_rpc_pb2.CreateWorldRequest(settings={"env_id": tensor_utils.pack_tensor(env_id)})).world_name


class _Base:
    def setUp(self):
        super().setUp()
        self._conn = _connect(_server.address)

    def tearDown(self):
        super().tearDown()
        self._conn.close()

    @property
    def connection(self):
        return self._conn


class TestCreateDestroyWorld(_Base, create_destroy_world.CreateDestroyWorld):
    required_world_settings = {"env_id": tensor_utils.pack_tensor("frozenlake")}
    invalid_world_settings = {"bogus": tensor_utils.pack_tensor(1), "seed": tensor_utils.pack_tensor("x"),
                              "config.size": tensor_utils.pack_tensor("banana")}
    has_multiple_world_support = True


class TestJoinLeaveWorld(_Base, join_leave_world.JoinLeaveWorld):
    invalid_join_settings = {"bogus": tensor_utils.pack_tensor(1)}

    def setUp(self):
        super().setUp()
        self._world_name = _world(self._conn, "sokoban")

    @property
    def world_name(self):
        return self._world_name


class TestReset(_Base, reset.Reset):
    def join_world(self):
        return self._conn.send(dm_env_rpc_pb2.JoinWorldRequest(world_name=_world(self._conn))).specs


class TestResetWorld(_Base, reset_world.ResetWorld):
    def setUp(self):
        super().setUp()
        self._world_name = _world(self._conn)

    @property
    def world_name(self):
        return self._world_name


class TestStep(_Base, step.Step):
    def setUp(self):
        super().setUp()
        self._specs = self._conn.send(dm_env_rpc_pb2.JoinWorldRequest(world_name=_world(self._conn))).specs

    @property
    def specs(self):
        return self._specs


async def test_idle_dm_connection_ends_and_frees_its_worlds(start_server):
    server = await start_server(idle_timeout_s=0.3)
    loop = asyncio.get_running_loop()
    conn = _connect(server.address)
    name = await loop.run_in_executor(None, dm_env_adaptor.create_world, conn, {"env_id": "frozenlake"})
    assert name and server.manager.live == 1
    await asyncio.sleep(0.8)
    with pytest.raises(grpc.RpcError) as e:
        await loop.run_in_executor(None, conn.send, dm_env_rpc_pb2.JoinWorldRequest(world_name=name))
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "idle" in e.value.details()
    assert server.manager.live == 0 and not server.dm_service.worlds
    conn.close()
