"""TrajectorySender over real loopback gRPC: delivery, dedup of retried sends, backpressure, rejection."""
import asyncio
import socket
import uuid

import pytest

from atlasrl.clients.trajectory import TrajectorySender
from atlasrl.v1 import trajectory_pb2

from .learner_endpoint import LearnerEndpoint
from .recording_learner import serve_learner


def episode(i: int, turns: int = 2) -> trajectory_pb2.Episode:
    ep = trajectory_pb2.Episode(episode_id=str(uuid.uuid4()), actor_id="t", group_id=f"g{i // 4}", seed=i)
    for _ in range(turns):
        ep.turns.add(prompt_ids=[1, 2, 3], response_ids=[4], logprobs=[-0.5], loss_mask=[1], policy_version=0,
                     action_mode=trajectory_pb2.ACTION_MODE_FREE, temperature=1.0)
    ep.group_size = 4
    return ep


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_round_trip_every_episode_once():
    server, learner = await serve_learner()
    try:
        eps = [episode(i) for i in range(37)]
        async with TrajectorySender(server.address, batch_size=8) as sender:
            for ep in eps:
                await sender.put(ep)
            await sender.flush(timeout=20)
            assert sender.stats.accepted == 37 and sender.stats.duplicates == 0 and sender.buffered == 0
        assert set(learner.episodes) == {ep.episode_id for ep in eps}
        got = learner.episodes[eps[5].episode_id]
        assert got == eps[5]
    finally:
        await server.stop(0)


async def test_lost_ack_is_retried_and_deduplicated_by_the_real_learner():
    learner = await LearnerEndpoint(vocab_size=100).start()
    learner.trajectories.lose_acks = 2  # the first two pushes reach the buffer, then the "connection" fails
    try:
        eps = [episode(i) for i in range(10)]
        async with TrajectorySender(learner.address, batch_size=4, backoff_initial_s=0.01) as sender:
            for ep in eps:
                await sender.put(ep)
            await sender.flush(timeout=20)
            assert sender.stats.push_failures == 2
            assert sender.stats.duplicates >= 4  # the resent batch was recognised
            assert sender.stats.accepted + sender.stats.duplicates >= 10
        got = learner.episodes()
        assert sorted(e.episode_id for e in got) == sorted(e.episode_id for e in eps)  # every episode exactly once
    finally:
        await learner.stop()


async def test_learner_down_buffers_to_bound_then_blocks_then_delivers():
    port = free_port()
    sender = await TrajectorySender(f"127.0.0.1:{port}", max_buffered=5, backoff_initial_s=0.05, backoff_max_s=0.2).start()
    try:
        eps = [episode(i) for i in range(6)]
        for ep in eps[:5]:
            await asyncio.wait_for(sender.put(ep), 1)  # room in the buffer: immediate
        blocked = asyncio.create_task(sender.put(eps[5]))
        await asyncio.sleep(0.5)
        assert not blocked.done() and sender.full and not sender.connected
        assert sender.stats.push_failures >= 1
        server, learner = await serve_learner(port)  # the learner comes (back) up
        try:
            await asyncio.wait_for(blocked, 20)
            await sender.flush(timeout=20)
            assert set(learner.episodes) == {ep.episode_id for ep in eps}
            assert sender.connected
        finally:
            await server.stop(0)
    finally:
        await sender.close()


async def test_rejected_episodes_are_not_resent():
    server, learner = await serve_learner()
    try:
        bad = trajectory_pb2.Episode(episode_id=str(uuid.uuid4()))  # no turns: the learner refuses it
        async with TrajectorySender(server.address) as sender:
            await sender.put(bad)
            await sender.put(episode(0))
            await sender.flush(timeout=10)
            assert sender.stats.rejected == 1 and sender.stats.accepted == 1
        assert learner.receptions == 2
    finally:
        await server.stop(0)


async def test_put_requires_an_episode_id():
    sender = TrajectorySender("127.0.0.1:1")
    with pytest.raises(ValueError, match="episode_id"):
        await sender.put(trajectory_pb2.Episode())
