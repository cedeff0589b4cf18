"""A trained action-head policy leaves the learner and comes back: checkpoint -> `atlasrl learner export` ->
the actor engine's ``model``, acting exactly as the learner's weights do (what `atlasrl up` evaluates after
training); and the SDE noise schedule is the same on both sides at every version."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

from atlasrl.actors.engines import EngineConfig, GenerationRequest, SamplingParams, make_engine
from atlasrl.learner import checkpoint
from atlasrl.learner.config import LearnerConfig
from atlasrl.learner.trainer import TrainBatch, Trainer
from atlasrl.models.chat import user
from atlasrl.policies.action_head.learning import collate_flow, episode_flow_seqs
from atlasrl.up.evaluation import latest_model_dir
from atlasrl.up.plan import atlasrl_cmd
from tests.action_head.test_learner_update import AH, rollouts

SCHEDULED = AH.model_copy(update={"noise_std": 1.0, "noise_std_final": 0.2, "noise_decay_updates": 2})


def frames(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(n)]


def chunks(engine, images, temperature: float) -> np.ndarray:
    gens = engine.generate([GenerationRequest([user("reach", images=1)], [im]) for im in images],
                           SamplingParams(temperature=temperature, seed=5))
    return np.stack([g.extra["chunk"] for g in gens])


def test_sigma_schedule():
    assert AH.sigma_at(10**6) == AH.noise_std                      # no schedule: constant
    assert SCHEDULED.sigma_at(0) == 1.0 and SCHEDULED.sigma_at(1) == pytest.approx(0.6)
    assert SCHEDULED.sigma_at(2) == SCHEDULED.sigma_at(50) == pytest.approx(0.2)


def test_export_round_trip_and_scheduled_log_probs(process_group, tmp_path):
    engine = make_engine(EngineConfig(kind="action_head", model="", action_head=SCHEDULED, seed=0))
    episodes = rollouts(engine)
    trainer = Trainer(LearnerConfig(model="", action_head=SCHEDULED, batch_episodes=4, lr=1e-2, seed=0))
    trainer.update(TrainBatch(episodes, [1.0] * len(episodes), [0] * len(episodes)))
    assert trainer.version == 1
    engine.update_weights(1, trainer.full_tensors(torch.float32))

    # version 1 samples with sigma 0.6, and the learner scores at its own version with the same sigma
    [gen] = engine.generate([GenerationRequest([user("reach", images=1)], [frames(1)[0]])], SamplingParams(seed=3))
    from atlasrl.policies.action_head.learning import turn_record
    from atlasrl.v1 import trajectory_pb2

    mb = collate_flow(episode_flow_seqs(trajectory_pb2.Episode(
        episode_id="x", turns=[turn_record(gen.prompt_ids, frames(1)[0], gen.extra, gen.logprobs)]), 0, 1.0))
    with torch.no_grad():
        logp, _, _ = trainer._forward(trainer.policy, mb)
        at_zero, _, _ = trainer.policy(mb["tf"].at_version(0))
    assert torch.allclose(logp, mb["behav_logp"], atol=1e-4, rtol=0)
    assert not torch.allclose(at_zero, mb["behav_logp"], atol=1e-2)   # sigma 1.0 is another distribution

    # checkpoint -> `atlasrl learner export` (the CLI `atlasrl up` runs) -> the engine's model directory
    ckpt = checkpoint.save(trainer, tmp_path / "ckpt", buffer_state=None)
    assert json.loads((ckpt / "meta.json").read_text())["action_head"]["noise_std_final"] == 0.2
    out = tmp_path / "final-model"
    proc = subprocess.run(atlasrl_cmd("learner", "export", "--ckpt", str(tmp_path / "ckpt"), "--out", str(out)),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert latest_model_dir(out) == out
    loaded = make_engine(EngineConfig(kind="action_head", model=str(out), action_head=SCHEDULED, seed=9))
    assert loaded.version == 1
    images = frames()
    np.testing.assert_array_equal(chunks(loaded, images, 0.0), chunks(engine, images, 0.0))   # the ODE policy
    np.testing.assert_allclose(chunks(loaded, images, 1.0), chunks(engine, images, 1.0), atol=1e-6)
    fresh = make_engine(EngineConfig(kind="action_head", model="", action_head=SCHEDULED, seed=9))
    assert not np.allclose(chunks(fresh, images, 0.0), chunks(loaded, images, 0.0))       # not the initial weights


def test_exported_directory_of_another_network_is_refused(tmp_path):
    engine = make_engine(EngineConfig(kind="action_head", model="", action_head=AH))
    engine.policy.save_exported(tmp_path / "m", version=4)
    wider = AH.model_copy(update={"width": 64})
    with pytest.raises(ValueError, match="shape"):
        make_engine(EngineConfig(kind="action_head", model=str(tmp_path / "m"), action_head=wider))
    deeper = AH.model_copy(update={"depth": 2})
    with pytest.raises(ValueError, match="not this action-head network"):
        make_engine(EngineConfig(kind="action_head", model=str(tmp_path / "m"), action_head=deeper))
