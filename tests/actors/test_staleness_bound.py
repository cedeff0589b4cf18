"""actor.staleness_bound: a real actor (tiny CPU engine) against a real env server and the learner's real
services. Bound 0 is synchronous: one learner batch is generated with version v, then nothing until v + 1."""
from __future__ import annotations

import asyncio
import time

import numpy as np

from atlasrl.actors.actor import start_actor, stop_actor

from .conftest import actor_config, model_vocab
from .learner_endpoint import LearnerEndpoint


async def wait_for(predicate, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_bound_zero_generates_one_batch_per_version(tiny_engine, env_server):
    learner = await LearnerEndpoint(vocab_size=model_vocab(tiny_engine), batch_episodes=4).start()
    cfg = actor_config(envs=[env_server.address], learner=learner.address, num_envs=6, staleness_bound=0,
                       max_learner_backlog=None, push_batch=1, pacing_poll_s=0.05, info_interval_s=0.2)
    original = {k: v.detach().clone() for k, v in tiny_engine.policy.model.named_parameters()}
    parts = await start_actor(cfg, engine=tiny_engine)
    run = asyncio.create_task(parts.loop.run())
    try:
        for version in (1, 2):
            await wait_for(lambda v=version: len(learner.episodes()) >= 4 * v)
            await asyncio.sleep(1.0)              # more time to run ahead, if it could
            assert len(learner.episodes()) == 4 * version and parts.loop.in_flight == 0
            named = {k: (v.detach().numpy() * (1 - 0.1 * version)).astype(np.float32) for k, v in original.items()}
            await learner.publish(version, named)
        await wait_for(lambda: len(learner.episodes()) >= 12)
    finally:
        parts.loop.stop()
        await asyncio.wait_for(run, 30)
        await stop_actor(parts)
        await learner.stop()
        tiny_engine.update_weights(0, original.items())   # the engine is shared by the session's tests
    eps = learner.episodes()
    for ep in eps:
        assert len({t.policy_version for t in ep.turns}) == 1, "an episode of bound 0 is played by one version"
    counts = {v: sum(1 for ep in eps if ep.turns[0].policy_version == v) for v in (0, 1, 2)}
    assert counts[0] == 4 and counts[1] == 4 and counts[2] >= 4   # one batch per version, version 2's last
