"""PPO's bootstrap of cut episodes, actor side (issue #16): a PPO learner asks for it in TrajectoryInfo, and every
episode cut by the turn cap then carries the prompt of the state it was cut in; terminated episodes carry none.
A real actor (tiny engine) against a real env server and the learner's real services over loopback gRPC."""
from __future__ import annotations

import asyncio

import pytest

from atlasrl.actors.actor import start_actor, stop_actor

from .conftest import actor_config, model_vocab
from .learner_endpoint import LearnerEndpoint


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
async def test_cut_episodes_carry_their_last_state_only_for_ppo(tiny_engine, env_server, algo):
    learner = await LearnerEndpoint(vocab_size=model_vocab(tiny_engine), algo=algo).start()
    # A 2-turn cap on a 6-step map: most episodes are cut, some end in a hole or at the goal.
    cfg = actor_config(envs=[env_server.address], learner=learner.address, max_turns=2)
    parts = await start_actor(cfg, engine=tiny_engine)
    try:
        await asyncio.wait_for(parts.loop.run(max_episodes=12), 120)
        await parts.sender.flush(20)
    finally:
        await stop_actor(parts)
        await learner.stop()
    eps = learner.episodes()
    assert len(eps) >= 12
    cut = [e for e in eps if e.terminal_cause == "timeout"]
    assert cut, "the turn cap cut no episode"
    moved = 0
    for ep in eps:
        assert ep.HasField("bootstrap") == (algo == "ppo" and ep.terminal_cause == "timeout"), ep.terminal_cause
        if not ep.HasField("bootstrap"):
            continue
        b, last = ep.bootstrap, ep.turns[-1]
        # The prompt of the state after the last turn (it differs from the last turn's unless the agent stood still);
        # nothing of it is trained.
        moved += list(b.prompt_ids) != list(last.prompt_ids)
        assert list(b.loss_mask) == [0] * len(b.response_ids) and len(b.response_ids) >= 1
        assert b.reward == 0.0 and b.policy_version == last.policy_version
    assert algo != "ppo" or moved > 0
