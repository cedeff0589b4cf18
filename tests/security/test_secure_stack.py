"""Every service on main served with mTLS and role tokens; each answers its own role's token and refuses others."""
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atlasrl.rpc import make_channel
from atlasrl.rpc.config import ChannelConfig
from atlasrl.v1 import (
    coordinator_pb2,
    coordinator_pb2_grpc,
    critic_pb2,
    critic_pb2_grpc,
    env_pb2,
    env_pb2_grpc,
    memory_pb2,
    memory_pb2_grpc,
    trajectory_pb2,
    trajectory_pb2_grpc,
    weights_pb2,
    weights_pb2_grpc,
)

from .conftest import client_sec, server_sec
from .services import Stack


@pytest.fixture(scope="module")
def secure_stack(pki, tmp_path_factory):
    from atlasrl.rpc.security import set_default_security

    good, _ = pki
    set_default_security(server_sec(good, role="coordinator"))   # like `--tls-* --mtls --token-file` on every role
    try:
        stack = Stack(tmp_path_factory.mktemp("secure")).start()
    finally:
        set_default_security(None)
    yield stack
    stack.stop()


def by_service(stack):
    return {svc.full_name: h for h in stack.hosted for svc in h.services}


# (service, read call allowed for the actor, call only another role may make, the role that may)
CASES = [
    ("atlasrl.v1.EnvService", lambda ch: env_pb2_grpc.EnvServiceStub(ch).ListEnvs(env_pb2.ListEnvsRequest(), timeout=10), None),
    ("atlasrl.v1.MemoryService", lambda ch: memory_pb2_grpc.MemoryServiceStub(ch).Stats(memory_pb2.MemoryStatsRequest(), timeout=10),
     (lambda ch: memory_pb2_grpc.MemoryServiceStub(ch).Reset(memory_pb2.MemoryResetRequest(), timeout=10), "admin")),
    ("atlasrl.v1.CoordinatorService", lambda ch: coordinator_pb2_grpc.CoordinatorServiceStub(ch).GetStatus(coordinator_pb2.GetStatusRequest(), timeout=10),
     (lambda ch: coordinator_pb2_grpc.CoordinatorServiceStub(ch).SetRunState(
         coordinator_pb2.SetRunStateRequest(run_state=coordinator_pb2.RUN_STATE_PAUSED), timeout=10), "admin")),
    ("atlasrl.v1.TrajectoryService", lambda ch: trajectory_pb2_grpc.TrajectoryServiceStub(ch).GetInfo(trajectory_pb2.TrajectoryInfoRequest(), timeout=10), None),
    ("atlasrl.v1.WeightService", lambda ch: weights_pb2_grpc.WeightServiceStub(ch).GetLatest(weights_pb2.GetLatestRequest(), timeout=10),
     (lambda ch: weights_pb2_grpc.WeightServiceStub(ch).Publish(iter([]), timeout=10), "learner")),
    ("atlasrl.v1.CriticService", lambda ch: critic_pb2_grpc.CriticServiceStub(ch).Info(critic_pb2.CriticInfoRequest(), timeout=10), None),
]


def test_every_v1_service_is_covered_by_cases(secure_stack):
    assert {c[0] for c in CASES} >= {n for n in by_service(secure_stack) if n.startswith("atlasrl.v1.")}


@pytest.mark.parametrize("service,read,privileged", CASES, ids=[c[0].rsplit(".", 1)[1] for c in CASES])
async def test_service_under_mtls_and_tokens(secure_stack, pki, service, read, privileged):
    good, rogue = pki
    addr = by_service(secure_stack)[service].address

    def chan(sec):
        return make_channel(addr, ChannelConfig(security=sec))

    async with chan(client_sec(good, "actor")) as ch:           # actor token + client cert: served
        try:
            await read(ch)
        except grpc.aio.AioRpcError as err:   # e.g. NOT_FOUND before weights exist: the service itself answered
            assert err.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                                      grpc.StatusCode.UNAVAILABLE), err
    async with chan(client_sec(good, tokens=False)) as ch:     # cert but no token
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await read(ch)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        h = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert h.status == health_pb2.HealthCheckResponse.SERVING   # health is open to any mTLS peer
    async with chan(client_sec(good, "actor", cert=None)) as ch:   # token but no client cert
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await read(ch)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    async with chan(client_sec(rogue, "actor", ca=good["ca"])) as ch:   # cert from another CA
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await read(ch)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    if privileged:
        call, role = privileged
        async with chan(client_sec(good, "actor")) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await call(ch)
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED and f"(allowed: {role})" in e.value.details()
        async with chan(client_sec(good, role)) as ch:
            try:
                await call(ch)
            except grpc.aio.AioRpcError as err:   # past the guard: the service's own answer, never the guard's refusal
                assert err.code() != grpc.StatusCode.UNAUTHENTICATED and "may not call" not in err.details(), err
