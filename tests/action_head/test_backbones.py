"""Backbones: AtlasVLA's composition (patch embedding, DINOv2 ViT, geometry, Qwen3) and an HF VL model by path."""
from __future__ import annotations

import numpy as np
import torch

from atlasrl.models.tiny import tiny_model_path
from atlasrl.policies.action_head.backbone import GeometryStandIn
from atlasrl.policies.action_head.config import ActionHeadConfig
from atlasrl.policies.action_head.policy import ActionHeadPolicy, ChunkBatch


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(n)]


def _train_step(pol: ActionHeadPolicy, ids, imgs) -> None:
    acted = pol.act(ids, imgs, generator=torch.Generator().manual_seed(0))
    logp, _, _ = pol(ChunkBatch(ids, imgs, acted.path, acted.times))
    (-logp.sum()).backward()


def test_atlas_composition_every_part_wired_and_freezable(tmp_path):
    geo = tmp_path / "geometry.pt2"   # a geometry encoder plugged by path (torch.export), as a real VGGT would be
    torch.export.save(torch.export.export(GeometryStandIn(8, 24), (torch.zeros(2, 3, 32, 32),),
                                          dynamic_shapes=({0: torch.export.Dim("batch")},)), str(geo))
    cfg = ActionHeadConfig(image_size=32, patch_size=8, vit="tiny", geometry=str(geo),
                           model=str(tiny_model_path("qwen3")), freeze=["language"])
    pol = ActionHeadPolicy(cfg)
    assert type(pol.backbone.language).__name__ == "Qwen3Model"
    assert type(pol.backbone.vit).__name__ == "Dinov2Model"
    imgs = _frames(2)
    ids = [pol.backbone.tokenize("reach the target", im) for im in imgs]
    ctx, mask = pol.context(ids, imgs)
    n_patch = (32 // 8) ** 2
    assert ctx.shape[1] == n_patch + (n_patch + 1) + n_patch + max(map(len, ids)) and mask.shape == ctx.shape[:2]
    _train_step(pol, ids, imgs)
    for part in ("patch_embed", "vit", "vit_proj", "geometry", "geometry_proj", "language_proj"):
        grads = [p.grad for p in getattr(pol.backbone, part).parameters() if p.requires_grad]
        assert grads and sum(float(g.abs().sum()) for g in grads if g is not None) > 0, part
    assert all(p.grad is None and not p.requires_grad for p in pol.backbone.language.parameters())


def test_hf_vl_backbone_conditions_the_expert():
    cfg = ActionHeadConfig(backbone="hf_vl", model=str(tiny_model_path("qwen2.5-vl")), horizon=4, steps=2)
    pol = ActionHeadPolicy(cfg)
    imgs = _frames(2)
    ids = [pol.backbone.tokenize("reach the target", im) for im in imgs]
    ctx, mask = pol.context(ids, imgs)
    assert ctx.shape == (2, len(ids[0]), pol.backbone.context_dim) and bool(mask.all())
    _train_step(pol, ids, imgs)
    assert pol.backbone.lm.model.language_model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    assert pol.backbone.lm.model.visual.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
