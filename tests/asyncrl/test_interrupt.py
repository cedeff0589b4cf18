"""Interruptible generation: new weights land between two decode steps, every token keeps its version.

Real transformers engine on the tiny Qwen2, real learner Trainer. The swap is staged from another thread while
a generate call is in flight (engine.sim_step_s paces the decode steps so the test can act between them).
"""
import threading
import time

import pytest
import torch

from atlasrl.actors.engines import EngineConfig, GenerationRequest, make_engine
from atlasrl.actors.engines.base import SamplingParams
from atlasrl.learner.config import LearnerConfig
from atlasrl.learner.trainer import TrainBatch, Trainer
from atlasrl.learner.validation import Malformed, validate_episode
from atlasrl.models.chat import system, user
from atlasrl.models.logprobs import Sample, sample_logprobs
from atlasrl.models.tiny import tiny_model_path
from atlasrl.v1 import trajectory_pb2

MODEL = str(tiny_model_path("qwen2", seed=0))
PARAMS = SamplingParams(max_tokens=14, temperature=1.0, seed=5)
REQUESTS = [GenerationRequest([system("You walk on ice."), user("Where next?")]),
            GenerationRequest([system("You walk on ice."), user("Holes to the left. " * 3 + "Where next?")])]


def perturbed(engine, scale: float = 0.05) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    return {n: p.detach() + scale * torch.randn(p.shape, generator=g) for n, p in engine.policy.model.named_parameters()}


def generate_with_swap(engine, new: dict[str, torch.Tensor], after_steps: int = 3):
    """Run generate in a thread and stage ``new`` as version 1 once ``after_steps`` decode steps have run."""
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(gens=engine.generate(REQUESTS, PARAMS)))
    t.start()
    deadline = time.monotonic() + 60
    while engine.stats["decode_steps"] < after_steps:
        assert t.is_alive(), "generation ended before the swap could be staged"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    engine.stage_weights(1, new.items())
    t.join(60)
    return out["gens"]


def episode(gens, group="g") -> list[trajectory_pb2.Episode]:
    eps = []
    for k, g in enumerate(gens):
        t = trajectory_pb2.TurnRecord(prompt_ids=g.prompt_ids, response_ids=g.token_ids, logprobs=g.logprobs,
                                      loss_mask=[1] * len(g.token_ids), reward=float(k), temperature=g.temperature,
                                      policy_version=g.version, token_versions=g.token_versions,
                                      action_mode=trajectory_pb2.ACTION_MODE_FREE)
        versions = sorted(set(g.token_versions))
        eps.append(trajectory_pb2.Episode(episode_id=f"{group}{k}", group_id=group, group_size=len(gens), turns=[t],
                                          policy_versions=versions))
    return eps


@pytest.fixture(scope="module")
def swapped():
    """One generation across a swap, and the reference log-probs of its tokens under both weight versions."""
    engine = make_engine(EngineConfig(model=MODEL, weight_swap="interrupt", sim_step_s=0.05, seed=1))
    old = {n: p.detach().clone() for n, p in engine.policy.model.named_parameters()}
    new = perturbed(engine)
    gens = generate_with_swap(engine, new)
    samples = [Sample(g.prompt_ids, g.token_ids) for g in gens]
    lp_new = sample_logprobs(engine.policy, samples, PARAMS.temperature)
    engine.update_weights(2, old.items())
    lp_old = sample_logprobs(engine.policy, samples, PARAMS.temperature)
    return engine, gens, lp_old, lp_new


def test_tokens_keep_the_version_that_produced_them(swapped):
    engine, gens, lp_old, lp_new = swapped
    assert engine.stats["interrupts"] == 1
    for g, old, new in zip(gens, lp_old, lp_new):
        tv = g.token_versions
        assert len(tv) == len(g.token_ids) and tv == sorted(tv)
        assert tv[0] == 0 and g.version == 0
        assert tv[-1] == 1, f"no token after the swap: {tv}"
        k = tv.index(1)
        assert k >= 3   # the swap came after three decode steps, never before
        # Each token's log-prob is its own policy's: the old weights' before the swap, the new ones' after
        # (the cache was recomputed with the new weights, else the first tokens after the swap would be neither).
        assert g.logprobs[:k] == pytest.approx(old[:k], abs=2e-4)
        assert g.logprobs[k:] == pytest.approx(new[k:], abs=2e-4)
        assert max(abs(a - b) for a, b in zip(g.logprobs[k:], old[k:])) > 1e-3   # the versions differ here


def test_turn_records_carry_token_versions_and_the_learner_checks_them(swapped):
    _, gens, _, _ = swapped
    for ep in episode(gens):
        validate_episode(ep, vocab_size=10**6, max_seq_tokens=8192, need_group=True)
        assert list(ep.policy_versions) == [0, 1]
        bad = trajectory_pb2.Episode()
        bad.CopyFrom(ep)
        bad.turns[0].token_versions[-1] = 0          # a version going back within a turn
        with pytest.raises(Malformed, match="token_versions"):
            validate_episode(bad, vocab_size=10**6, max_seq_tokens=8192, need_group=True)
        del bad.turns[0].token_versions[-1]          # one version short
        with pytest.raises(Malformed, match="token_versions"):
            validate_episode(bad, vocab_size=10**6, max_seq_tokens=8192, need_group=True)


@pytest.mark.usefixtures("process_group")
def test_decoupled_loss_weighs_each_token_by_its_own_behaviour_logprob(swapped):
    """The learner holds version 0: tokens sampled by version 0 get importance weight exactly 1, the ones version 1
    sampled get pi_0 / pi_1 of their own. behav_weight_mean is the mean over tokens."""
    _, gens, lp_old, lp_new = swapped
    trainer = Trainer(LearnerConfig(model=MODEL, batch_episodes=2, behav_imp_weight_cap=1e9, lr=1e-6))
    stats = trainer.update(TrainBatch([e.SerializeToString() for e in episode(gens)], [1.0, 1.0], [0, 0]))
    weights = [torch.exp(torch.tensor(o) - torch.tensor(g.logprobs)) for g, o in zip(gens, lp_old)]
    for g, w in zip(gens, weights):
        k = g.token_versions.index(1)
        assert w[:k].tolist() == pytest.approx([1.0] * k, abs=5e-4)
    expected = float(torch.cat(weights).mean())
    assert stats["behav_weight_mean"] == pytest.approx(expected, rel=1e-3)
    # Had the learner taken one version's log-probs for the whole turn, the mean would be another number.
    as_if_new = float(torch.cat([torch.exp(torch.tensor(o) - torch.tensor(n)) for o, n in zip(lp_old, lp_new)]).mean())
    assert abs(as_if_new - expected) > 1e-2


def test_staged_versions_never_mix_and_never_go_back():
    engine = make_engine(EngineConfig(model=MODEL, weight_swap="interrupt", seed=1))
    new = perturbed(engine)
    engine.stage_weights(2, new.items())             # idle: loaded at once
    assert engine.version == 2
    engine.stage_weights(1, perturbed(engine, 0.5).items())   # older than what is loaded: ignored
    assert engine.version == 2
    with engine._lock:                               # a call in flight: both stay staged, the newest wins
        engine.stage_weights(4, new.items())
        engine.stage_weights(3, perturbed(engine, 0.5).items())
        assert engine.version == 2
    gens = engine.generate(REQUESTS, PARAMS)         # loads version 4 before its first token
    assert {v for g in gens for v in g.token_versions} == {4}
    assert engine.version == 4
    with pytest.raises(ValueError, match="unknown parameter"):
        engine.stage_weights(5, [("no.such.weight", torch.zeros(1))])
    assert engine.version == 4


def test_interrupt_is_refused_where_the_engine_would_drain():
    from atlasrl.actors.config import ActorConfig
    from atlasrl.policies.action_head.config import ActionHeadConfig

    assert ActorConfig(model=MODEL, weight_swap="interrupt").weight_swap == "interrupt"
    assert ActorConfig(model=MODEL, engine="vllm", weight_swap="interrupt").weight_swap == "interrupt"
    with pytest.raises(ValueError, match="weight_swap=interrupt needs engine=transformers or vllm: the action_head"):
        ActorConfig(model=MODEL, engine="action_head", action_head=ActionHeadConfig(), weight_swap="interrupt")
