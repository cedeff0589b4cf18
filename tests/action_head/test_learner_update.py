"""Action-head turns through the real learner: the actor engine's log-probs equal the FSDP2-wrapped learner's,
an update changes the trained parts (not the frozen ones), and the new weights swap into the engine."""
from __future__ import annotations

import uuid

import numpy as np
import pytest
import torch

from atlasrl.actors.engines import EngineConfig, GenerationRequest, SamplingParams, make_engine
from atlasrl.envserver.envs.reach import ReachEnv
from atlasrl.learner.config import LearnerConfig
from atlasrl.learner.trainer import TrainBatch, Trainer
from atlasrl.models.chat import user
from atlasrl.policies.action_head.config import ActionHeadConfig
from atlasrl.policies.action_head.learning import collate_flow, episode_flow_seqs, turn_record
from atlasrl.v1 import trajectory_pb2

AH = ActionHeadConfig(image_size=32, patch_size=8, horizon=4, steps=3, width=32, heads=2, depth=1,
                      vision_width=32, geometry="standin", keypoints=4, freeze=["geometry"])


def rollouts(engine, groups: int = 2, size: int = 2, turns: int = 2) -> list[bytes]:
    """GRPO groups of reach episodes played by the engine (in process: the wire is tested elsewhere)."""
    out = []
    for g in range(groups):
        for k in range(size):
            env = ReachEnv.from_config({"image_size": "32", "chunk": "4", "max_turns": str(turns)}, seed=g)
            obs = env.text_reset(seed=g)
            ep = trajectory_pb2.Episode(episode_id=str(uuid.uuid4()), group_id=f"g{g}", group_size=size, env_id="reach")
            while not (obs.terminated or obs.truncated):
                [gen] = engine.generate([GenerationRequest([user(obs.text, images=1)], [obs.images[0]])],
                                        SamplingParams(seed=100 * g + 10 * k + len(ep.turns)))
                rec = turn_record(gen.prompt_ids, obs.images[0], gen.extra, gen.logprobs)
                obs = env.numeric_step(gen.extra["chunk"])
                rec.reward = rec.env_reward = obs.reward
                rec.policy_version = gen.version
                rec.state_key = obs.layout_key.encode() + bytes([len(ep.turns)])
                ep.turns.append(rec)
            ep.policy_versions.append(0)
            out.append(ep.SerializeToString())
    return out


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_learner_update_on_action_head_batches(process_group, algo):
    engine = make_engine(EngineConfig(kind="action_head", model="", action_head=AH, seed=0))
    episodes = rollouts(engine)
    trainer = Trainer(LearnerConfig(model="", action_head=AH, algo=algo, batch_episodes=4, lr=1e-2, seed=0))

    # the learner (FSDP2-wrapped) rescores the actor's chunks with the same weights: equal to 1e-4
    seqs = [s for i, b in enumerate(episodes) for s in episode_flow_seqs(trajectory_pb2.Episode.FromString(b), i, 1.0)]
    mb = collate_flow(seqs)
    with torch.no_grad():
        logp, _, _ = trainer.policy(mb["tf"])
    assert logp.shape == (len(seqs), AH.steps)
    assert torch.allclose(logp, mb["behav_logp"], atol=1e-4, rtol=0)

    before = {n: p.detach().clone() for n, p in trainer.policy.hf_named_parameters()}
    stats = trainer.update(TrainBatch(episodes, [1.0] * len(episodes), [0] * len(episodes)))
    assert trainer.version == 1 and np.isfinite(stats["loss"]) and stats["grad_norm"] > 0
    after = dict(trainer.full_tensors(torch.float32))
    moved = {n for n, t in after.items() if not torch.equal(t, before[n].to_local() if hasattr(before[n], "to_local") else before[n])}
    assert any(n.startswith("expert.") for n in moved) and any(n.startswith("backbone.patch_embed") for n in moved)
    assert not any(n.startswith("backbone.geometry.") for n in moved)       # frozen by config

    # the new weights swap into the actor's engine; its log-probs then match the learner's again
    engine.update_weights(trainer.version, after.items())
    assert engine.version == 1
    [gen] = engine.generate([GenerationRequest([user("reach", images=1)], [seqs[0].image])], SamplingParams(seed=3))
    again = collate_flow(episode_flow_seqs(trajectory_pb2.Episode(
        episode_id="x", turns=[turn_record(gen.prompt_ids, seqs[0].image, gen.extra, gen.logprobs)]), 0, 1.0))
    with torch.no_grad():
        relogp, _, _ = trainer.policy(again["tf"])
    assert torch.allclose(relogp, again["behav_logp"], atol=1e-4, rtol=0)


def test_engine_refuses_bad_weights_before_changing_any():
    engine = make_engine(EngineConfig(kind="action_head", model="", action_head=AH))
    name, p = next(iter(engine.policy.named_parameters()))
    keep = p.detach().clone()
    with pytest.raises(ValueError, match="unknown parameter"):
        engine.update_weights(1, [(name, torch.zeros_like(p)), ("nope", torch.zeros(1))])
    with pytest.raises(ValueError, match="shape"):
        engine.update_weights(1, [(name, torch.zeros(3, 3, 3, 3, 3))])
    assert torch.equal(dict(engine.policy.named_parameters())[name], keep) and engine.version == 0
