"""The actor's own loop (RolloutLoop + Policy) with the action-head engine against a real env server: numeric
chunks go out as Action.values, episodes come back as ACTION_MODE_FLOW turns the learner's validation accepts
and whose log-probs the learner's policy reproduces."""
from __future__ import annotations

import pytest
import torch

from atlasrl.actors.config import ActorConfig, engine_config, resolve_images
from atlasrl.actors.engines import make_engine
from atlasrl.actors.policy import Policy
from atlasrl.actors.rollout import RolloutLoop, env_clients
from atlasrl.learner.validation import Malformed, validate_episode
from atlasrl.policies.action_head.config import ActionHeadConfig
from atlasrl.policies.action_head.learning import collate_flow, episode_flow_seqs
from atlasrl.policies.action_head.policy import ActionHeadPolicy
from atlasrl.v1 import trajectory_pb2

AH = ActionHeadConfig(image_size=32, patch_size=8, horizon=4, steps=2, width=32, heads=2, depth=1, vision_width=32,
                      keypoints=4)


async def test_rollout_loop_plays_reach_with_numeric_chunks(start_server):
    server = await start_server()
    cfg = resolve_images(ActorConfig(envs=[server.address], engine="action_head", action_head=AH, env_id="reach",
                                     env_config={"image_size": "32", "chunk": "4", "max_turns": "2"}, num_envs=4,
                                     group_size=2, max_turns=2, memory_hints="none", memory_shaping=False,
                                     memory_ingest=False))
    engine = make_engine(engine_config(cfg))
    episodes: list[trajectory_pb2.Episode] = []

    async def collect(ep, _buffer):
        episodes.append(ep)

    loop = RolloutLoop(cfg, Policy(engine, cfg), env_clients(cfg.envs), on_episode=collect)
    await loop.run(max_episodes=4)
    assert len(episodes) >= 4
    learner = ActionHeadPolicy(AH, seed=engine_config(cfg).seed)
    for ep in episodes:
        validate_episode(ep, vocab_size=0, max_seq_tokens=1 << 20, need_group=True)
        for t in ep.turns:
            assert t.action_mode == trajectory_pb2.ACTION_MODE_FLOW and len(t.logprobs) == AH.steps
            assert len(t.images) == 1 and t.chunk.sent.shape == [4, 2]
        mb = collate_flow(episode_flow_seqs(ep, 0, 1.0))
        with torch.no_grad():
            logp, _, _ = learner(mb["tf"])
        assert torch.allclose(logp, mb["behav_logp"], atol=1e-4, rtol=0)
    # a broken flow turn is refused naming the field
    bad = trajectory_pb2.Episode()
    bad.CopyFrom(episodes[0])
    del bad.turns[0].logprobs[:]
    with pytest.raises(Malformed, match="turn 0: logprobs"):
        validate_episode(bad, vocab_size=0, max_seq_tokens=1 << 20, need_group=True)
