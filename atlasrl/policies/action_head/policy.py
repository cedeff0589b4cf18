"""ActionHeadPolicy: backbone + flow expert, the one module actor and learner both run.

    policy = ActionHeadPolicy(cfg)                          # same seed -> same initial weights on both sides
    out = policy.act(prompt_ids, images, generator=g)        # actor: chunks (B, H, D), paths, times, logp (B, K)
    logp, entropy, values = policy(ChunkBatch(...))          # learner: (B, K), (B, K), (B,) or None

A decision's log-prob is split per denoising step, like a text turn's per token: the learner's decoupled
PPO loss (atlasrl/learner/losses.py) then takes one ratio per step (as Flow-GRPO does), and the loss mask
and normalisation work unchanged. Both sides get these numbers from ``expert.path_log_probs``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from atlasrl.policies.action_head.backbone import build_backbone
from atlasrl.policies.action_head.config import ActionHeadConfig
from atlasrl.policies.action_head.expert import FlowExpert, path_log_probs, refine, sample_chunk, time_grid


@dataclass
class ChunkBatch:
    """Decisions to score: what the actor recorded (prompt ids, image, SDE path and times)."""

    prompt_ids: list[list[int]]
    images: list[np.ndarray]          # primary camera, uint8 (H, W, 3)
    path: torch.Tensor                # (B, K + 1, H, D): x_0 (noise) ... x_K (the chunk)
    times: torch.Tensor               # (B, K + 1, H)

    def to(self, device) -> ChunkBatch:
        return ChunkBatch(self.prompt_ids, self.images, self.path.to(device), self.times.to(device))


@dataclass
class Acted:
    chunks: torch.Tensor              # (B, H, D) what the env gets (times action_scale), after any refinement
    path: torch.Tensor                # (B, K + 1, H, D) the SDE path (before refinement)
    times: torch.Tensor               # (B, K + 1, H)
    logp: torch.Tensor                # (B, K) per-step log-probs of the path
    refined: torch.Tensor | None      # (B, H) tokens refined (AsyncVLA), or None


class ActionHeadPolicy(nn.Module):
    def __init__(self, cfg: ActionHeadConfig, value_head: bool = False, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        with torch.random.fork_rng():
            torch.manual_seed(seed)   # actor and learner build the same initial weights
            self.backbone = build_backbone(cfg)
            self.expert = FlowExpert(cfg, self.backbone.context_dim)
        self.value_head = nn.Linear(self.backbone.context_dim, 1) if value_head else None
        if self.value_head is not None:
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)
        self.apply_freeze(cfg.freeze)

    def apply_freeze(self, parts: Sequence[str]) -> None:
        """requires_grad off for the named parts (``backbone`` = every backbone part)."""
        modules = self.backbone.part_modules()
        for part in parts:
            targets = [self.backbone] if part == "backbone" else modules.get(part, [])
            if part != "backbone" and part not in modules:
                raise ValueError(f"action_head.freeze: this backbone has no part {part!r}; it has {sorted(modules)}")
            for m in targets:
                for p in m.parameters():
                    p.requires_grad_(False)

    def hf_named_parameters(self):
        """(name, parameter) of what actors load (all but the value head), in a fixed order."""
        for name, p in self.named_parameters():
            if not name.startswith("value_head."):
                yield name, p

    def shard_units(self) -> list[nn.Module]:
        """What FSDP2 shards on its own before the root: backbone blocks and the expert's decoder layers."""
        return self.backbone.shard_units() + list(self.expert.layers)

    def context(self, prompt_ids, images):
        return self.backbone(prompt_ids, images)

    def forward(self, batch: ChunkBatch, temperature: float = 1.0, want_values: bool = False):
        """Learner side: per-step log-probs (B, K) of the recorded paths, the (constant) Gaussian entropy, values."""
        ctx, mask = self.context(batch.prompt_ids, batch.images)
        logp = path_log_probs(self.expert, ctx, mask, batch.path, batch.times, self.cfg)
        entropy = transition_entropy(self.cfg, batch.times).to(logp.dtype)
        values = None
        if want_values and self.value_head is not None:
            m = mask.unsqueeze(-1).to(ctx.dtype)
            values = self.value_head((ctx * m).sum(1) / m.sum(1).clamp_min(1)).squeeze(-1).float()
        return logp.clone(), entropy, None if values is None else values.clone()

    @torch.no_grad()
    def act(self, prompt_ids, images, generator: torch.Generator | None = None, stochastic: bool = True) -> Acted:
        """Actor side: sample chunks with the SDE; log-probs by the learner's function on the same path."""
        ctx, mask = self.context(prompt_ids, images)
        times = time_grid(self.cfg, len(images), device=ctx.device, dtype=ctx.dtype)
        path = sample_chunk(self.expert, ctx, mask, times, self.cfg, generator=generator, stochastic=stochastic)
        logp = path_log_probs(self.expert, ctx, mask, path, times, self.cfg)
        chunk, refined = path[:, -1], None
        if self.expert.confidence_out is not None and self.cfg.refine_threshold > 0:
            chunk, refined = refine(self.expert, ctx, mask, chunk, self.cfg, generator=generator)
        return Acted(chunk * self.cfg.action_scale, path, times, logp, refined)


def transition_entropy(cfg: ActionHeadConfig, times: torch.Tensor) -> torch.Tensor:
    """Entropy of each step's Gaussian (B, K): fixed by the noise schedule, so it carries no gradient."""
    dt = (times[:, 1:] - times[:, :-1]).clamp_min(0)
    var = cfg.noise_std**2 * dt
    live = var > 0
    ent = torch.where(live, 0.5 * torch.log(2 * math.pi * math.e * torch.where(live, var, torch.ones_like(var))),
                      torch.zeros_like(var))
    return ent.sum(-1) * cfg.action_dim
