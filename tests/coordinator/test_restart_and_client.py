"""Durability across a coordinator restart and the RoleRegistration client helper."""
import asyncio

from atlasrl.clients.coordinator import CoordinatorClient, RoleRegistration
from atlasrl.coordinator.server import CoordinatorServer
from atlasrl.rpc import make_channel
from atlasrl.v1 import coordinator_pb2 as pb
from atlasrl.v1 import coordinator_pb2_grpc


async def until(predicate, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_restarted_coordinator_loses_no_state_and_members_carry_on(tmp_path, make_cfg):
    cfg = make_cfg(tmp_path, lease_ttl_s=2.0)
    first = CoordinatorServer(cfg)
    port = await first.start()
    learner = RoleRegistration(f"127.0.0.1:{port}", role="learner", address="127.0.0.1:7100", heartbeat_s=0.1)
    actor = RoleRegistration(f"127.0.0.1:{port}", role="actor", capacity=2, heartbeat_s=0.1)
    server = RoleRegistration(f"127.0.0.1:{port}", role="envserver", address="127.0.0.1:7001", capacity=4, heartbeat_s=0.1)
    for r in (learner, actor, server):
        await r.start()
    learner.policy_version = 4
    actor.counters["env_steps"] += 100
    await CoordinatorClient(f"127.0.0.1:{port}").set_run_state("paused")
    await until(lambda: learner.view.policy_version == 4 and actor.view.run_state == pb.RUN_STATE_PAUSED)
    ids = (learner.member_id, actor.member_id, server.member_id)
    before = await actor.assignment()

    await first.stop(0)  # killed: members keep heartbeating into the void
    actor.counters["env_steps"] += 50
    await asyncio.sleep(0.5)
    second = CoordinatorServer(make_cfg(tmp_path, port=port, lease_ttl_s=2.0))
    await second.start()
    try:
        await until(lambda: actor._acked.get("env_steps") == 150)
        st = await CoordinatorClient(f"127.0.0.1:{port}").status()
        assert (learner.member_id, actor.member_id, server.member_id) == ids  # nobody had to re-register
        assert st.counters["actor.env_steps"] == 150
        assert st.view.policy_version == 4 and st.view.run_state == pb.RUN_STATE_PAUSED
        after = await actor.assignment()
        assert (after.generation, after.env_servers) == (before.generation, before.env_servers)
        assert after.env_servers == [("127.0.0.1:7001", 2)]
    finally:
        for r in (learner, actor, server):
            await r.close()
        await second.stop(0)


async def test_a_stopped_run_is_final_unless_a_new_launch_reopens_it(tmp_path, make_cfg):
    """`atlasrl up --run-dir` on a finished run: the last launch left STOPPING, which refuses new members."""
    first = CoordinatorServer(make_cfg(tmp_path))
    port = await first.start()
    await CoordinatorClient(f"127.0.0.1:{port}").set_run_state("stopping")
    await first.stop(0)
    for reopen, state in ((False, pb.RUN_STATE_STOPPING), (True, pb.RUN_STATE_RUNNING)):
        server = CoordinatorServer(make_cfg(tmp_path, reopen_stopped=reopen))
        port = await server.start()
        try:
            assert (await CoordinatorClient(f"127.0.0.1:{port}").status()).view.run_state == state
        finally:
            await server.stop(0)
    reg = RoleRegistration(f"127.0.0.1:{port}", role="actor", capacity=2, heartbeat_s=0.1)
    server = CoordinatorServer(make_cfg(tmp_path, port=port))   # reopened and kept RUNNING: new members welcome
    await server.start()
    try:
        await reg.start()
        assert reg.member_id
    finally:
        await reg.close()
        await server.stop(0)


async def test_reregistration_after_expiry_counts_nothing_twice(coordinator):
    reg = RoleRegistration(coordinator.address, role="actor", capacity=1, heartbeat_s=0.1)
    await reg.start()
    reg.counters["env_steps"] = 30
    reg.counters["episodes"] = 3
    await until(lambda: reg._acked.get("env_steps") == 30)
    old = reg.member_id
    # Simulate a long stall: the heartbeat task stops, the lease (1 s) runs out.
    reg._tasks[0].cancel()
    await asyncio.sleep(1.8)
    reg.counters["env_steps"] += 12
    reg._tasks[0] = asyncio.create_task(reg._heartbeat_loop())
    await until(lambda: reg.member_id != old and reg._acked.get("env_steps") == 12)
    st = await CoordinatorClient(coordinator.address).status(include_dead=True)
    assert st.counters["actor.env_steps"] == 42 and st.counters["actor.episodes"] == 3
    assert {m.member_id: m.alive for m in st.members} == {old: False, reg.member_id: True}
    await reg.close()


async def test_staleness_gate_and_pause_through_the_helper(coordinator):
    learner = await RoleRegistration(coordinator.address, role="learner", address="127.0.0.1:7100", heartbeat_s=0.05).start()
    actor = await RoleRegistration(coordinator.address, role="actor", capacity=1, heartbeat_s=0.05).start()
    actor.policy_version = 0
    learner.policy_version = 5  # max_staleness is 2: the actor must wait
    await until(lambda: actor.view.policy_version == 5)
    waiter = asyncio.create_task(actor.wait_until_fresh())
    await asyncio.sleep(0.3)
    assert not waiter.done()
    actor.policy_version = 4  # the actor loaded newer weights
    await asyncio.wait_for(waiter, 5)
    await until(lambda: actor.may_proceed)

    await CoordinatorClient(coordinator.address).set_run_state("paused")
    await until(lambda: actor.view.run_state == pb.RUN_STATE_PAUSED)
    running = asyncio.create_task(actor.wait_running())
    await asyncio.sleep(0.2)
    assert not running.done()
    await CoordinatorClient(coordinator.address).set_run_state("running")
    assert await asyncio.wait_for(running, 5) is True
    await learner.close()
    await actor.close()
    async with make_channel(coordinator.address) as ch:
        st = await coordinator_pb2_grpc.CoordinatorServiceStub(ch).GetStatus(pb.GetStatusRequest())
    assert len(st.members) == 0  # both deregistered


async def test_thread_mode_for_sync_roles(coordinator):
    """A role without an asyncio loop (torch learner) runs the helper in a thread."""
    import time

    def sync_role():
        reg = RoleRegistration(coordinator.address, role="learner", address="127.0.0.1:7100", heartbeat_s=0.05)
        reg.start_in_thread()
        reg.policy_version = 9
        reg.counters["samples_trained"] += 64
        time.sleep(0.4)
        view_version = reg.view.policy_version
        assignment = reg.call_in_thread(reg.assignment(), 5)
        reg.close_in_thread()
        return view_version, assignment

    view_version, assignment = await asyncio.to_thread(sync_role)  # the test loop keeps serving the coordinator
    assert view_version == 9 and assignment.learner_address == "127.0.0.1:7100"
    st = await CoordinatorClient(coordinator.address).status(include_dead=True)
    assert st.counters["learner.samples_trained"] == 64 and not st.members[0].alive


async def test_report_hook_fills_every_heartbeat_and_the_last_one(coordinator):
    """A role hands the helper a report function instead of running a reporting loop of its own: it is called
    before every heartbeat, and before the final one at close, so the coordinator ends with the last count."""
    steps = {"n": 0}

    def fill(reg):
        reg.counters["env_steps"] = steps["n"]

    reg = RoleRegistration(coordinator.address, role="envserver", address="127.0.0.1:7001", heartbeat_s=0.1, report=fill)
    await reg.start()
    client = CoordinatorClient(coordinator.address)
    steps["n"] = 7
    async def seen(n):
        st = await client.status(include_dead=True)
        return st.counters.get("envserver.env_steps") == n
    deadline = asyncio.get_running_loop().time() + 10
    while not await seen(7):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    steps["n"] = 9
    await reg.close()               # no heartbeat in between can have carried 9: only the closing one
    assert await seen(9)
