"""Faults: an env server process killed mid-episode; the learner unreachable (buffer, then pause, then resume)."""
from __future__ import annotations

import asyncio
import signal
import socket
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from atlasrl.actors.actor import start_actor, stop_actor
from atlasrl.actors.policy import Policy
from atlasrl.actors.rollout import RolloutLoop, env_clients
from atlasrl.clients.weights import WeightSubscriber
from atlasrl.v1 import trajectory_pb2

from .conftest import actor_config, model_vocab
from .learner_endpoint import LearnerEndpoint


async def spawn_envserver() -> tuple[asyncio.subprocess.Process, str]:
    """A real `atlasrl envserver` process on a free port; returns (process, address)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "atlasrl.cli.main", "envserver", "--port", "0", "--workers", "0", "--print-port",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL)
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.startswith(b"PORT "), line
    return proc, f"127.0.0.1:{int(line.split()[1])}"


class HoldGate:
    """Lets the test freeze the rollout loop between batches."""

    def __init__(self):
        self.open = asyncio.Event()
        self.open.set()
        self.waiting = asyncio.Event()

    async def __call__(self):
        if not self.open.is_set():
            self.waiting.set()
            await self.open.wait()
            self.waiting.clear()


async def test_env_server_killed_mid_episode_drops_and_moves(tiny_engine, env_server):
    proc, doomed = await spawn_envserver()
    try:
        cfg = actor_config(envs=[doomed, env_server.address], num_envs=4, group_size=2)
        reported = []

        async def collect(ep_proto, _buffer):
            reported.append(ep_proto)

        gate = HoldGate()
        loop = RolloutLoop(cfg, Policy(tiny_engine, cfg), env_clients(cfg.envs), on_episode=collect, gate=gate)
        run = asyncio.create_task(loop.run(max_episodes=24))
        while loop.finished < 4:
            await asyncio.sleep(0.01)
        gate.open.clear()
        await asyncio.wait_for(gate.waiting.wait(), 30)
        # Frozen between batches: these episodes are mid-flight on the server about to die.
        doomed_slots = [s for s in loop.slots if s.link.target == doomed and s.episode is not None]
        doomed_ids = {s.episode.episode_id for s in doomed_slots}
        doomed_groups = {(s.episode.group_id, s.episode.seed) for s in doomed_slots}
        assert doomed_ids and all(s.episode.turns or True for s in doomed_slots)
        before = len(reported)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        gate.open.set()
        await asyncio.wait_for(run, 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    ids = [e.episode_id for e in reported]
    assert not doomed_ids & set(ids), "an episode of the dead server was reported"
    assert loop.dropped == len(doomed_ids)
    assert len(reported) - before >= 4, "rollouts did not continue on the surviving server"
    assert all(s.link.target == env_server.address for s in loop.slots), "sessions were not moved"
    assert loop.m.dropped.labels("env_server_down")._value.get() == len(doomed_ids)
    # Every reported episode is whole, and a dropped episode's seed was replayed for its group.
    for ep in reported:
        assert ep.terminal_cause in {"success", "hole", "timeout"}
    per_group = Counter((e.group_id, e.seed) for e in reported)
    assert all(n <= 2 for n in per_group.values())
    replayed = [g for g in doomed_groups if per_group[g] >= 1]
    assert replayed, "the dropped episodes' groups were never replayed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_learner_unreachable_buffers_then_pauses_then_resumes(tiny_engine, env_server):
    port = free_port()
    cfg = actor_config(envs=[env_server.address], learner=f"127.0.0.1:{port}", max_buffered_episodes=3, push_batch=2)
    parts = await start_actor(cfg, engine=tiny_engine)
    learner = None
    try:
        run = asyncio.create_task(parts.loop.run(max_episodes=8))
        while not parts.sender.full:
            assert not run.done()
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # let the loop reach the blocked put
        steps = parts.loop.env_steps
        await asyncio.sleep(1.0)
        assert parts.loop.env_steps == steps, "generation did not pause with the buffer full"
        # Nothing got through: the start-up CloseGroups (which goes before any episode) keeps failing.
        assert parts.sender.buffered == 3 and not parts.sender.connected and "UNAVAILABLE" in parts.sender.last_error
        assert parts.policy.m.paused.labels("buffer_full")._value.get() == 1
        learner = await LearnerEndpoint(vocab_size=model_vocab(tiny_engine), port=port).start()
        await asyncio.wait_for(run, 120)
        await parts.sender.flush(30)
        assert parts.loop.env_steps > steps
    finally:
        await stop_actor(parts)
        if learner is not None:
            await learner.stop()
    eps = learner.episodes()
    assert len(eps) == parts.loop.finished >= 8
    assert len({e.episode_id for e in eps}) == len(eps)
    assert parts.sender.stats.accepted == len(eps)


async def test_stale_weights_pause_generation_until_new_weights(tiny_engine, env_server, learner):
    cfg = actor_config(envs=[env_server.address], learner=learner.address, max_staleness=2, info_interval_s=0.2)
    parts = await start_actor(cfg, engine=tiny_engine)
    original = {k: v.detach().clone() for k, v in tiny_engine.policy.model.named_parameters()}
    try:
        run = asyncio.create_task(parts.loop.run(max_episodes=10_000))
        while parts.loop.finished < 2:
            await asyncio.sleep(0.02)
        learner.version = 10  # the learner moved on; this actor still acts with version 0
        paused = parts.policy.m.paused.labels("stale_weights")
        for _ in range(200):
            if paused._value.get() == 1:
                break
            await asyncio.sleep(0.05)
        assert paused._value.get() == 1, "generation did not pause on stale weights"
        steps = parts.loop.env_steps
        await asyncio.sleep(1.0)
        assert parts.loop.env_steps == steps and not run.done()
        await learner.publish(9, {k: v.numpy() for k, v in original.items()})  # within the lag of 2
        for _ in range(400):
            if parts.loop.env_steps > steps:
                break
            await asyncio.sleep(0.05)
        assert parts.loop.env_steps > steps and tiny_engine.version == 9 and paused._value.get() == 0
        parts.loop.stop()
        await asyncio.wait_for(run, 30)
    finally:
        await stop_actor(parts)
        tiny_engine.update_weights(0, original.items())


async def test_a_caller_giving_up_on_a_swap_does_not_lose_the_version(tiny_engine, learner):
    """The staleness gate waits for weights with a timeout. When it gives up while the swap's copy is still
    queued for a worker thread, the copy must still run: the subscriber never resends a version it delivered.
    (A cancelled ``to_thread`` drops a queued work item; CI hit this as an actor stuck on stale weights.)"""
    cfg = actor_config(envs=["unused:1"], learner=learner.address)
    original = {k: v.detach().clone() for k, v in tiny_engine.policy.model.named_parameters()}
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(1))   # one worker thread, which the test keeps busy
    busy = threading.Event()
    occupied = loop.run_in_executor(None, busy.wait)
    policy = Policy(tiny_engine, cfg, weights=WeightSubscriber(learner.address, after_version=0))
    await policy.start()
    try:
        await learner.publish(3, {k: v.numpy() for k, v in original.items()})
        for _ in range(400):
            if policy.weights.last_version == 3:
                break
            await asyncio.sleep(0.02)
        assert policy.weights.last_version == 3, "the version never arrived"
        with pytest.raises(asyncio.TimeoutError):   # gives up while the copy waits for the thread
            await asyncio.wait_for(policy.wait_for_version_above(0), 0.3)
        assert tiny_engine.version == 0
        busy.set()
        await asyncio.wait_for(policy.wait_for_version_above(0), 30)
        assert tiny_engine.version == 3 and policy.m.weight_updates._value.get() == 1
    finally:
        busy.set()
        await occupied
        await policy.close()
        tiny_engine.update_weights(0, original.items())


@pytest.mark.parametrize("setting", [4, None])
async def test_learner_backlog_paces_new_groups_until_it_trains(tiny_engine, env_server, learner, setting):
    """Admission control: no new group starts while max_learner_backlog episodes are untrained (learner buffer +
    unsent + in play); episodes already started finish (none is held mid-way), and training reopens admission.
    None (the default): the bound is one learner batch, the batch_episodes its TrajectoryInfo reports."""
    bound = setting if setting is not None else learner.cfg.batch_episodes
    cfg = actor_config(envs=[env_server.address], learner=learner.address, max_learner_backlog=setting,
                       info_interval_s=0.2, pacing_poll_s=0.05)
    parts = await start_actor(cfg, engine=tiny_engine)
    try:
        run = asyncio.create_task(parts.loop.run(max_episodes=10_000))
        paused = parts.policy.m.paused.labels("learner_backlog")
        for _ in range(600):
            if all(s.parked for s in parts.loop.slots):
                break
            await asyncio.sleep(0.05)
        assert all(s.parked and s.episode is None for s in parts.loop.slots), "the actor never stopped admitting"
        assert paused._value.get() == 1
        await asyncio.sleep(0.5)   # let the last pushes land
        steps, started = parts.loop.env_steps, parts.loop.finished
        await asyncio.sleep(1.0)
        assert parts.loop.env_steps == steps
        # At most the bound, plus the rest of the last group admitted (its members always finish).
        assert bound <= learner.buffer.buffered + parts.sender.buffered <= bound + cfg.group_size - 1
        assert learner.buffer.ready == learner.buffer.buffered, "a group was left incomplete"
        # The learner trains on what it holds: admission reopens and generation goes on.
        taken = await asyncio.to_thread(learner.buffer.take, learner.buffer.ready, learner.version, 2.0)
        assert taken
        for _ in range(400):
            if parts.loop.env_steps > steps:
                break
            await asyncio.sleep(0.05)
        assert parts.loop.env_steps > steps and parts.loop.finished >= started
        parts.loop.stop()
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
    finally:
        await stop_actor(parts)


async def test_an_actor_restarted_over_its_killed_process_orphans_trains_on(tiny_engine, env_server):
    """The killed process of actor-0 left 7 lone members in the learner (their partners were in play when it died).
    They count as untrained backlog: with the default bound (one learner batch of 8) the restarted process could
    admit one group and then park, while the learner waited for groups that never complete (group_timeout_s, here
    10 minutes). At start the actor's sender closes them (CloseGroups): they are dropped as incomplete_group and
    training goes on with the new process's episodes."""
    learner = await LearnerEndpoint(vocab_size=model_vocab(tiny_engine), batch_episodes=8, group_timeout_s=600).start()
    orphans = []
    for i in range(7):
        ep = trajectory_pb2.Episode(episode_id=f"orphan-{i}", actor_id="actor-0", group_id=f"actor-0/seed-{100 + i}",
                                    group_size=2, seed=100 + i)
        ep.turns.add(prompt_ids=[1, 2, 3], response_ids=[4], logprobs=[-0.5], loss_mask=[1], policy_version=0,
                     action_mode=trajectory_pb2.ACTION_MODE_FREE, temperature=1.0)
        assert learner.buffer.add(ep, 0) == "accepted"
        orphans.append(ep.episode_id)
    cfg = actor_config(envs=[env_server.address], learner=learner.address, actor_id="actor-0", max_learner_backlog=None,
                       info_interval_s=0.2, pacing_poll_s=0.05)
    parts = await start_actor(cfg, engine=tiny_engine)
    trained: list[str] = []
    try:
        run = asyncio.create_task(parts.loop.run(max_episodes=10_000))
        for _ in range(600):     # the learner's side: train every full batch as it becomes ready
            batch = await asyncio.to_thread(learner.buffer.take, 8, learner.version, 0.05)
            trained += [b.episode.episode_id for b in batch or []]
            if len(trained) >= 16:
                break
        parts.loop.stop()
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
    finally:
        await stop_actor(parts)
        await learner.stop()
    assert len(trained) >= 16, f"training stalled behind the orphans: {len(trained)} episodes trained"
    assert not set(orphans) & set(trained) and learner.buffer.dropped_incomplete == 7


async def test_a_learner_restarted_without_its_lineage_is_followed_down(tiny_engine):
    """A learner that restarts without checkpoints counts again from 0. The actor held version 9: asking only for
    newer versions would wait until the learner caught up, while the learner refuses every version-9 episode as
    made by weights it never published. The subscriber notices the lower version and takes its weights."""
    cfg = actor_config(envs=["unused:1"])
    original = {k: v.detach().clone() for k, v in tiny_engine.policy.model.named_parameters()}
    first = await LearnerEndpoint().start()
    port = int(first.address.rsplit(":", 1)[1])
    policy = Policy(tiny_engine, cfg, weights=WeightSubscriber(first.address, backoff_max_s=0.2))
    await policy.start()
    second = None
    try:
        await first.publish(9, {k: v.numpy() for k, v in original.items()})
        await asyncio.wait_for(policy.wait_for_version_above(8), 30)
        await first.server.stop(0)
        second = await LearnerEndpoint(port=port).start()
        await second.publish(2, {k: (v + 1).numpy() for k, v in original.items()})
        for _ in range(400):
            await policy.maybe_update()
            if tiny_engine.version == 2:
                break
            await asyncio.sleep(0.05)
        assert tiny_engine.version == 2, "the actor still acts with the dead lineage's version 9"
        name, value = next(iter(original.items()))
        assert torch.equal(dict(tiny_engine.policy.model.named_parameters())[name].detach(), (value + 1).to(value.dtype))
    finally:
        await policy.close()
        if second is not None:
            await second.server.stop(0)
        tiny_engine.update_weights(0, original.items())
