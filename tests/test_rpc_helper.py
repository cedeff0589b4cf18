"""The shared server helper over real loopback gRPC: parsing errors, status mapping, health, reflection, metrics."""
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from atlasrl.metrics import Metrics
from atlasrl.rpc import RpcServer, ServerConfig, make_channel
from atlasrl.v1 import env_pb2, env_pb2_grpc
from tests.echo_services import ENV, EchoEnv


@pytest.fixture
async def server():
    s = RpcServer(ServerConfig(port=0, metrics_port=0, max_message_bytes=64 * 1024), Metrics("test"))
    s.add(EchoEnv(), ENV)
    await s.start()
    yield s
    await s.stop(0)


async def test_unary_and_garbage(server):
    async with make_channel(server.address) as ch:
        stub = env_pb2_grpc.EnvServiceStub(ch)
        resp = await stub.ListEnvs(env_pb2.ListEnvsRequest())
        assert resp.envs[0].env_id == "echo"
        raw = ch.unary_unary("/atlasrl.v1.EnvService/ListEnvs", request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await raw(b"\xff\xff\xff\xff")
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "atlasrl.v1.ListEnvsRequest" in e.value.details()


async def test_stream_survives_garbage_and_maps_errors(server):
    async with make_channel(server.address) as ch:
        call = ch.stream_stream("/atlasrl.v1.EnvService/Session", request_serializer=None, response_deserializer=env_pb2.EnvResponse.FromString)()
        await call.write(env_pb2.EnvRequest(request_id=1, reset=env_pb2.ResetRequest()).SerializeToString())
        await call.write(b"\x0a\xff\xff garbage")
        await call.write(env_pb2.EnvRequest(request_id=2, reset=env_pb2.ResetRequest()).SerializeToString())
        r1, bad, r2 = await call.read(), await call.read(), await call.read()
        assert (r1.request_id, r1.status.code) == (1, 0)
        assert bad.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "EnvRequest" in bad.status.message
        assert (r2.request_id, r2.status.code) == (2, 0)
        await call.write(env_pb2.EnvRequest(request_id=3, close=env_pb2.CloseRequest()).SerializeToString())
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call.read()
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "close is not supported" in e.value.details()


async def test_oversized_message_rejected_server_keeps_serving(server):
    async with make_channel(server.address) as ch:
        stub = env_pb2_grpc.EnvServiceStub(ch)
        big = env_pb2.EnvRequest(open=env_pb2.OpenRequest(env_id="x" * (200 * 1024)))
        call = stub.Session()
        await call.write(big)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call.read()
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (await stub.ListEnvs(env_pb2.ListEnvsRequest())).envs


async def test_health_reflection_metrics(server):
    async with make_channel(server.address) as ch:
        h = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="atlasrl.v1.EnvService"))
        assert h.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        async for r in stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])):
            names = {s.name for s in r.list_services_response.service}
            break
        assert {"atlasrl.v1.EnvService", "grpc.health.v1.Health"} <= names
        await env_pb2_grpc.EnvServiceStub(ch).ListEnvs(env_pb2.ListEnvsRequest())
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics").read().decode()
    assert 'atlasrl_rpc_requests_total{code="OK",method="ListEnvs",service="atlasrl.v1.EnvService"}' in text
