"""CoordinatorService over real loopback gRPC: leases, assignment, watch, staleness, counters, bad input."""
import asyncio
import urllib.request

import grpc
import pytest

from atlasrl.rpc import make_channel
from atlasrl.v1 import coordinator_pb2 as pb
from atlasrl.v1 import coordinator_pb2_grpc


def stub_for(ch):
    return coordinator_pb2_grpc.CoordinatorServiceStub(ch)


async def register(stub, role, address="", capacity=0, caps=(), name=""):
    r = await stub.Register(pb.RegisterRequest(role=role, address=address, capacity=capacity, capabilities=list(caps), name=name))
    return r.member_id


async def test_register_heartbeat_counters_are_idempotent(coordinator):
    async with make_channel(coordinator.address) as ch:
        stub = stub_for(ch)
        a = await register(stub, pb.ROLE_ACTOR, capacity=2, name="actor-0")
        hb = pb.HeartbeatRequest(member_id=a, policy_version=0, counters={"env_steps": 10, "episodes": 2})
        await stub.Heartbeat(hb)
        await stub.Heartbeat(hb)  # a retried heartbeat: same cumulative totals
        await stub.Heartbeat(pb.HeartbeatRequest(member_id=a, counters={"env_steps": 15, "episodes": 3}, gauges={"success_rate": 0.5}))
        b = await register(stub, pb.ROLE_ACTOR, capacity=2)
        await stub.Heartbeat(pb.HeartbeatRequest(member_id=b, counters={"env_steps": 5}))
        await stub.Deregister(pb.DeregisterRequest(member_id=b))  # a dead member's counts stay in the totals
        srv = await register(stub, pb.ROLE_ENVSERVER, "127.0.0.1:7001", capacity=4, name="envserver-0")
        await stub.Heartbeat(pb.HeartbeatRequest(member_id=srv, counters={"env_steps": 20}))  # the same steps, seen server-side
        st = await stub.GetStatus(pb.GetStatusRequest())
        assert dict(st.counters) == {"actor.env_steps": 20, "actor.episodes": 3, "envserver.env_steps": 20}
        assert [m.name for m in st.members] == ["actor-0", "envserver-0"]
        assert st.gauges["actor.success_rate"] == 0.5
        st = await stub.GetStatus(pb.GetStatusRequest(include_dead=True))
        assert len(st.members) == 3


async def test_assignment_balances_and_reassigns_on_expiry(coordinator):
    async with make_channel(coordinator.address) as ch:
        stub = stub_for(ch)
        s1 = await register(stub, pb.ROLE_ENVSERVER, "127.0.0.1:7001", capacity=4, caps=["frozenlake"])
        s2 = await register(stub, pb.ROLE_ENVSERVER, "127.0.0.1:7002", capacity=2, caps=["frozenlake"])
        await register(stub, pb.ROLE_LEARNER, "127.0.0.1:7100")
        await register(stub, pb.ROLE_MEMORY, "127.0.0.1:7200")
        a1 = await register(stub, pb.ROLE_ACTOR, capacity=3, caps=["frozenlake"])
        a2 = await register(stub, pb.ROLE_ACTOR, capacity=3, caps=["frozenlake"])
        got = [await stub.GetAssignment(pb.GetAssignmentRequest(member_id=a)) for a in (a1, a2)]
        load = {}
        for g in got:
            assert sum(s.slots for s in g.env_servers) == 3
            assert (g.learner_address, g.memory_address) == ("127.0.0.1:7100", "127.0.0.1:7200")
            for s in g.env_servers:
                load[s.address] = load.get(s.address, 0) + s.slots
        assert load == {"127.0.0.1:7001": 4, "127.0.0.1:7002": 2}
        gen = got[0].generation

        # Keep everyone but s2 alive past the lease: s2 expires, its slots move to s1.
        for _ in range(8):
            for m in (s1, a1, a2):
                await stub.Heartbeat(pb.HeartbeatRequest(member_id=m))
            await asyncio.sleep(0.2)
        g = await stub.GetAssignment(pb.GetAssignmentRequest(member_id=a1))
        assert g.generation > gen
        assert [(s.address, s.slots) for s in g.env_servers] == [("127.0.0.1:7001", 3)]
        assert g.learner_address == ""  # the learner stopped heartbeating too
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.Heartbeat(pb.HeartbeatRequest(member_id=s2))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND and "register again" in e.value.details()


async def test_watch_publishes_version_and_run_state(coordinator):
    async with make_channel(coordinator.address) as ch:
        stub = stub_for(ch)
        learner = await register(stub, pb.ROLE_LEARNER, "127.0.0.1:7100")
        stream = stub.Watch(pb.WatchRequest())
        first = await stream.read()
        assert first.policy_version == -1 and first.run_state == pb.RUN_STATE_RUNNING
        await stub.Heartbeat(pb.HeartbeatRequest(member_id=learner, policy_version=3))
        v = await asyncio.wait_for(stream.read(), 5)
        assert v.policy_version == 3
        await stub.SetRunState(pb.SetRunStateRequest(run_state=pb.RUN_STATE_PAUSED, reason="test"))
        v = await asyncio.wait_for(stream.read(), 5)
        assert v.run_state == pb.RUN_STATE_PAUSED
        await stub.SetRunState(pb.SetRunStateRequest(run_state=pb.RUN_STATE_STOPPING))
        v = await asyncio.wait_for(stream.read(), 5)
        assert v.run_state == pb.RUN_STATE_STOPPING
        assert await asyncio.wait_for(stream.read(), 5) is grpc.aio.EOF
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.SetRunState(pb.SetRunStateRequest(run_state=pb.RUN_STATE_RUNNING))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await register(stub, pb.ROLE_ACTOR)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "stopping" in e.value.details()


async def test_staleness_gate(coordinator):
    async with make_channel(coordinator.address) as ch:
        stub = stub_for(ch)
        learner = await register(stub, pb.ROLE_LEARNER, "127.0.0.1:7100")
        actor = await register(stub, pb.ROLE_ACTOR, capacity=1, name="actor-7")
        await stub.Heartbeat(pb.HeartbeatRequest(member_id=learner, policy_version=5))
        r = await stub.Heartbeat(pb.HeartbeatRequest(member_id=actor, policy_version=2))
        assert r.may_proceed is False and r.view.max_staleness == 2  # lags 3 > 2
        r = await stub.Heartbeat(pb.HeartbeatRequest(member_id=actor, policy_version=3))
        assert r.may_proceed is True
    text = urllib.request.urlopen(f"http://127.0.0.1:{coordinator.rpc.metrics_port}/metrics").read().decode()
    assert 'atlasrl_coordinator_staleness_waits_total{actor="actor-7"} 1.0' in text
    assert 'atlasrl_coordinator_actor_version_lag{actor="actor-7"} 2.0' in text
    assert "atlasrl_coordinator_policy_version 5.0" in text


@pytest.mark.parametrize("call,request_msg,code,words", [
    ("Register", pb.RegisterRequest(), grpc.StatusCode.INVALID_ARGUMENT, "role must be one of"),
    ("Register", pb.RegisterRequest(role=pb.ROLE_ACTOR, capacity=-1), grpc.StatusCode.INVALID_ARGUMENT, "capacity"),
    ("Register", pb.RegisterRequest(role=pb.ROLE_ENVSERVER, capacity=1), grpc.StatusCode.INVALID_ARGUMENT, "address is required"),
    ("Register", pb.RegisterRequest(role=pb.ROLE_MEMORY, address="nohostport"), grpc.StatusCode.INVALID_ARGUMENT, "host:port"),
    ("Register", pb.RegisterRequest(role=pb.ROLE_ACTOR, name="x" * 300), grpc.StatusCode.INVALID_ARGUMENT, "name is 300"),
    ("Heartbeat", pb.HeartbeatRequest(), grpc.StatusCode.INVALID_ARGUMENT, "member_id is empty"),
    ("Heartbeat", pb.HeartbeatRequest(member_id="actor-nope"), grpc.StatusCode.NOT_FOUND, "unknown member_id"),
    ("GetAssignment", pb.GetAssignmentRequest(member_id="x"), grpc.StatusCode.NOT_FOUND, "unknown member_id"),
    ("Deregister", pb.DeregisterRequest(), grpc.StatusCode.INVALID_ARGUMENT, "member_id is empty"),
    ("SetRunState", pb.SetRunStateRequest(), grpc.StatusCode.INVALID_ARGUMENT, "run_state must be"),
    ("GetStatus", pb.GetStatusRequest(history_points=-1), grpc.StatusCode.INVALID_ARGUMENT, "history_points"),
])
async def test_bad_input_gets_clear_status(coordinator, call, request_msg, code, words):
    async with make_channel(coordinator.address) as ch:
        stub = stub_for(ch)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await getattr(stub, call)(request_msg)
        assert e.value.code() == code and words in e.value.details(), e.value.details()
        assert (await stub.GetStatus(pb.GetStatusRequest())).view.run_state == pb.RUN_STATE_RUNNING  # still serving


async def test_negative_counter_and_garbage_bytes(coordinator):
    async with make_channel(coordinator.address) as ch:
        stub = stub_for(ch)
        a = await register(stub, pb.ROLE_ACTOR)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.Heartbeat(pb.HeartbeatRequest(member_id=a, counters={"env_steps": -4}))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "env_steps" in e.value.details()
        raw = ch.unary_unary("/atlasrl.v1.CoordinatorService/Register", request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await raw(b"\xff\xff\xff")
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "RegisterRequest" in e.value.details()


async def test_history_sampled(coordinator):
    async with make_channel(coordinator.address) as ch:
        stub = stub_for(ch)
        a = await register(stub, pb.ROLE_ACTOR)
        await stub.Heartbeat(pb.HeartbeatRequest(member_id=a, counters={"env_steps": 7}))
        await asyncio.sleep(0.35)
        st = await stub.GetStatus(pb.GetStatusRequest(history_points=100))
        assert len(st.history) >= 2 and st.history[-1].counters["actor.env_steps"] == 7
        assert [h.time for h in st.history] == sorted(h.time for h in st.history)
