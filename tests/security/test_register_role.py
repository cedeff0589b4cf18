"""A member registers with the coordinator as the role of its own token: another role's token is refused."""
import grpc
import pytest

from atlasrl.coordinator.config import CoordinatorConfig
from atlasrl.coordinator.server import CoordinatorServer
from atlasrl.rpc import ServerConfig, make_channel
from atlasrl.rpc.config import ChannelConfig
from atlasrl.v1 import coordinator_pb2 as pb
from atlasrl.v1 import coordinator_pb2_grpc

from .conftest import client_sec, server_sec


async def register(address, sec, role):
    async with make_channel(address, ChannelConfig(security=sec)) as ch:
        return await coordinator_pb2_grpc.CoordinatorServiceStub(ch).Register(
            pb.RegisterRequest(role=role, name="m", address="127.0.0.1:1", capacity=1), timeout=10)


async def test_a_token_registers_its_own_role_only(pki, tmp_path):
    good, _ = pki
    server = CoordinatorServer(CoordinatorConfig(server=ServerConfig(port=0, security=server_sec(good, role="coordinator")),
                                                 state_dir=tmp_path))
    await server.start()
    try:
        ok = await register(server.address, client_sec(good, "envserver"), pb.ROLE_ENVSERVER)
        assert ok.member_id
        with pytest.raises(grpc.aio.AioRpcError) as e:     # an env server started with the actor's token file
            await register(server.address, client_sec(good, "actor"), pb.ROLE_ENVSERVER)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "the actor role's token may not register a member of role envserver" in e.value.details()
        assert (await register(server.address, client_sec(good, "admin"), pb.ROLE_MEMORY)).member_id  # operators may
    finally:
        await server.stop(0)
