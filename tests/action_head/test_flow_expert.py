"""The flow expert: log-prob agreement actor/learner, the SDE, AsyncVLA's schedule and refinement, freezing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from atlasrl import codec
from atlasrl.policies.action_head.config import ActionHeadConfig
from atlasrl.policies.action_head.expert import (
    FlowExpert,
    gaussian_log_prob,
    refine,
    sample_chunk,
    step_mean_std,
    time_grid,
)
from atlasrl.policies.action_head.policy import ActionHeadPolicy, ChunkBatch


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("sde", ["reinflow", "flow_grpo"])
@pytest.mark.parametrize("schedule", ["uniform", "async"])
def test_actor_and_learner_log_probs_agree(sde, schedule):
    cfg = ActionHeadConfig(image_size=32, sde=sde, schedule=schedule, horizon=4, steps=3)
    actor, learner = ActionHeadPolicy(cfg, seed=3), ActionHeadPolicy(cfg, seed=3)
    imgs = _frames(4)
    ids = [[] for _ in imgs]
    acted = actor.act(ids, imgs, generator=torch.Generator().manual_seed(1))
    # the path and times cross the wire as float32 tensors, as in a TurnRecord
    path = torch.from_numpy(codec.decode(codec.encode(acted.path.numpy()), writable=True))
    times = torch.from_numpy(codec.decode(codec.encode(acted.times.numpy()), writable=True))
    logp, _, _ = learner(ChunkBatch(ids, imgs, path, times))
    assert logp.shape == (4, 3)
    assert torch.allclose(logp, acted.logp, atol=1e-4, rtol=0)
    # and the number depends on the weights: another init scores the same path differently
    other, _, _ = ActionHeadPolicy(cfg, seed=4)(ChunkBatch(ids, imgs, path, times))
    assert (other - acted.logp).abs().max() > 1e-2


def test_log_prob_is_the_gaussian_of_the_injected_noise():
    cfg = ActionHeadConfig(image_size=32, horizon=2, steps=2, noise_std=0.3)
    x = torch.zeros(1, 2, 2)
    mean, std = step_mean_std(cfg, x, torch.ones_like(x), torch.zeros(1, 2), torch.full((1, 2), 0.5))
    assert torch.allclose(mean, torch.full_like(x, 0.5)) and torch.allclose(std, torch.full_like(x, 0.3 * 0.5**0.5))
    nxt = mean + std * 1.0   # one std away in all 4 entries
    want = 4 * (-0.5 - np.log(0.3 * 0.5**0.5) - 0.5 * np.log(2 * np.pi))
    assert float(gaussian_log_prob(nxt, mean, std)) == pytest.approx(want, abs=1e-5)


def test_async_schedule_is_per_token_and_monotone():
    cfg = ActionHeadConfig(image_size=32, horizon=5, steps=4, schedule="async", schedule_skew=0.7)
    t = time_grid(cfg, batch=2)
    assert t.shape == (2, 5, 5)
    assert torch.all(t[:, 0] == 0) and torch.all(t[:, -1] == 1)
    assert torch.all(t[:, 1:] > t[:, :-1])                 # every token moves every step
    assert torch.all(t[0, 1:-1, 0] > t[0, 1:-1, -1])       # near tokens are denoised ahead of far ones
    uniform = time_grid(ActionHeadConfig(image_size=32, horizon=5, steps=4), batch=1)
    assert torch.all(uniform[0] == uniform[0, :, :1])


def test_refinement_touches_only_tokens_below_the_threshold():
    cfg = ActionHeadConfig(image_size=32, horizon=8, steps=3, confidence_head=True, refine_threshold=0.5)
    torch.manual_seed(0)
    expert = FlowExpert(cfg, context_dim=16)
    with torch.no_grad():   # a rater that splits the tokens: confidence from the token's first coordinate
        expert.confidence_out.weight.zero_()
        expert.confidence_out.bias.zero_()
    ctx = torch.randn(3, 5, 16)
    chunk = sample_chunk(expert, ctx, None, time_grid(cfg, 3), cfg, generator=torch.Generator().manual_seed(0))[:, -1]
    conf = torch.sigmoid(torch.randn(3, 8, generator=torch.Generator().manual_seed(2)) * 3)
    expert.confidence = lambda c, x, m: conf      # the rating under test: fixed, known per token
    refined, redo = refine(expert, ctx, None, chunk, cfg, generator=torch.Generator().manual_seed(5))
    assert torch.equal(redo, conf < 0.5) and 0 < int(redo.sum()) < redo.numel()
    keep = ~redo
    assert torch.equal(refined[keep], chunk[keep])                       # bit-identical
    assert torch.all((refined[redo] - chunk[redo]).abs().sum(-1) > 1e-4)  # every low-confidence token moved


def test_confidence_head_rates_tokens_in_unit_interval():
    cfg = ActionHeadConfig(image_size=32, horizon=4, confidence_head=True)
    expert = FlowExpert(cfg, context_dim=8)
    c = expert.confidence(torch.randn(2, 4, 2), torch.randn(2, 3, 8))
    assert c.shape == (2, 4) and torch.all((c > 0) & (c < 1))
    with pytest.raises(ValueError, match="no confidence head"):
        FlowExpert(ActionHeadConfig(image_size=32), 8).confidence(torch.randn(1, 8, 2), torch.randn(1, 1, 8))


def test_freezing_parts_by_config():
    cfg = ActionHeadConfig(image_size=32, patch_size=8, geometry="standin", freeze=["geometry"])
    pol = ActionHeadPolicy(cfg)
    assert not any(p.requires_grad for p in pol.backbone.geometry.parameters())
    assert all(p.requires_grad for p in pol.backbone.patch_embed.parameters())
    assert all(p.requires_grad for p in pol.expert.parameters())
    with pytest.raises(ValueError, match="no part 'vit'"):
        ActionHeadPolicy(ActionHeadConfig(image_size=32, freeze=["vit"]))
    frozen = ActionHeadPolicy(ActionHeadConfig(image_size=32, freeze=["backbone"]))
    assert not any(p.requires_grad for p in frozen.backbone.parameters())
