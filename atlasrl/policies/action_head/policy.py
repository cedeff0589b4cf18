"""ActionHeadPolicy: backbone + flow expert, the one module actor and learner both run.

    policy = ActionHeadPolicy(cfg)                          # same seed -> same initial weights on both sides
    policy.save_exported(dir, version); policy.load_exported(dir)   # `learner export` / the engine's `model`
    out = policy.act(prompt_ids, images, generator=g)        # actor: chunks (B, H, D), paths, times, logp (B, K)
    logp, entropy, values = policy(ChunkBatch(...))          # learner: (B, K), (B, K), (B,) or None

A decision's log-prob is split per denoising step, like a text turn's per token: the learner's decoupled
PPO loss (atlasrl/learner/losses.py) then takes one ratio per step (as Flow-GRPO does), and the loss mask
and normalisation work unchanged. Both sides get these numbers from ``expert.path_log_probs``.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from atlasrl.policies.action_head.backbone import build_backbone
from atlasrl.policies.action_head.config import ActionHeadConfig
from atlasrl.policies.action_head.expert import FlowExpert, path_log_probs, refine, sample_chunk, time_grid

EXPORT_WEIGHTS = "action_head.safetensors"
EXPORT_CONFIG = "action_head.json"


def is_exported(directory: str | Path) -> bool:
    """Whether ``directory`` holds an exported action-head policy (``ActionHeadPolicy.save_exported``)."""
    return bool(str(directory)) and (Path(directory) / EXPORT_WEIGHTS).is_file()


@dataclass
class ChunkBatch:
    """Decisions to score: what the actor recorded (prompt ids, image, SDE path and times)."""

    prompt_ids: list[list[int]]
    images: list[np.ndarray]          # primary camera, uint8 (H, W, 3)
    path: torch.Tensor                # (B, K + 1, H, D): x_0 (noise) ... x_K (the chunk)
    times: torch.Tensor               # (B, K + 1, H)
    version: int = 0                  # the policy version scoring them: its noise sigma (cfg.sigma_at)

    def to(self, device) -> ChunkBatch:
        return ChunkBatch(self.prompt_ids, self.images, self.path.to(device), self.times.to(device), self.version)

    def at_version(self, version: int) -> ChunkBatch:
        return ChunkBatch(self.prompt_ids, self.images, self.path, self.times, version)


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
            # actor and learner build the same initial weights (cfg.init_seed, else the caller's seed)
            torch.manual_seed(cfg.init_seed if cfg.init_seed is not None else seed)
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

    def save_exported(self, out: str | Path, version: int, **about) -> Path:
        """An exported policy directory: ``action_head.safetensors`` (what actors load: every parameter but the
        value head), ``action_head.json`` (its config) and ``atlasrl_version.json``. What `atlasrl learner
        export` writes for an action-head run and what the engine loads from ``model`` (``load_exported``)."""
        from safetensors.torch import save_file

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_file({n: p.detach().cpu().contiguous() for n, p in self.hf_named_parameters()}, str(out / EXPORT_WEIGHTS))
        (out / EXPORT_CONFIG).write_text(self.cfg.model_dump_json(indent=2))
        (out / "atlasrl_version.json").write_text(json.dumps({"version": version, **about}))
        return out

    def assign(self, named_tensors, complete: bool = False) -> None:
        """Replace parameters by name (``hf_named_parameters``' names), all checked before any is changed:
        ValueError naming an unknown parameter or a shape that differs; with ``complete``, also one left out.
        The engine's weight swaps and ``load_exported`` both go through here."""
        params = dict(self.hf_named_parameters())
        staged = []
        for name, t in named_tensors:
            p = params.get(name)
            if p is None:
                raise ValueError(f"unknown parameter {name!r} for the action-head policy")
            t = torch.as_tensor(t)
            if tuple(t.shape) != tuple(p.shape):
                raise ValueError(f"parameter {name!r}: shape {tuple(t.shape)}, expected {tuple(p.shape)}")
            staged.append((name, p, t))
        if complete:
            missing = sorted(set(params) - {name for name, _, _ in staged})
            if missing:
                raise ValueError(f"missing parameters {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        with torch.no_grad():
            for _, p, t in staged:
                p.copy_(t.to(device=p.device, dtype=p.dtype))

    def load_exported(self, directory: str | Path) -> int:
        """Load an exported directory's weights (every parameter by name and shape, or ValueError naming the
        first that differs: the directory was exported from another network); returns its policy version."""
        from safetensors.torch import load_file

        directory = Path(directory)
        try:
            self.assign(load_file(str(directory / EXPORT_WEIGHTS)).items(), complete=True)
        except ValueError as e:
            raise ValueError(f"{directory / EXPORT_WEIGHTS}: not this action-head network ({e}); compare "
                             f"{directory / EXPORT_CONFIG} with action_head") from None
        about = directory / "atlasrl_version.json"
        return int(json.loads(about.read_text()).get("version", 0)) if about.exists() else 0

    def shard_units(self) -> list[nn.Module]:
        """What FSDP2 shards on its own before the root: backbone blocks and the expert's decoder layers."""
        return self.backbone.shard_units() + list(self.expert.layers)

    def context(self, prompt_ids, images):
        return self.backbone(prompt_ids, images)

    def forward(self, batch: ChunkBatch, temperature: float = 1.0, want_values: bool = False):
        """Learner side: per-step log-probs (B, K) of the recorded paths, the (constant) Gaussian entropy, values."""
        ctx, mask = self.context(batch.prompt_ids, batch.images)
        sigma = self.cfg.sigma_at(batch.version)
        logp = path_log_probs(self.expert, ctx, mask, batch.path, batch.times, self.cfg, sigma)
        entropy = transition_entropy(self.cfg, batch.times, sigma).to(logp.dtype)
        values = None
        if want_values and self.value_head is not None:
            m = mask.unsqueeze(-1).to(ctx.dtype)
            values = self.value_head((ctx * m).sum(1) / m.sum(1).clamp_min(1)).squeeze(-1).float()
        return logp.clone(), entropy, None if values is None else values.clone()

    @torch.no_grad()
    def act(self, prompt_ids, images, generator: torch.Generator | None = None, stochastic: bool = True,
            version: int = 0) -> Acted:
        """Actor side: sample chunks with the SDE of policy ``version`` (its sigma); log-probs by the learner's
        function on the same path."""
        sigma = self.cfg.sigma_at(version)
        ctx, mask = self.context(prompt_ids, images)
        times = time_grid(self.cfg, len(images), device=ctx.device, dtype=ctx.dtype)
        path = sample_chunk(self.expert, ctx, mask, times, self.cfg, generator=generator, stochastic=stochastic, sigma=sigma)
        logp = path_log_probs(self.expert, ctx, mask, path, times, self.cfg, sigma)
        chunk, refined = path[:, -1], None
        if self.expert.confidence_out is not None and self.cfg.refine_threshold > 0:
            chunk, refined = refine(self.expert, ctx, mask, chunk, self.cfg, generator=generator, sigma=sigma)
        return Acted(chunk * self.cfg.action_scale, path, times, logp, refined)


def transition_entropy(cfg: ActionHeadConfig, times: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Entropy of each step's Gaussian (B, K): fixed by the noise schedule, so it carries no gradient."""
    dt = (times[:, 1:] - times[:, :-1]).clamp_min(0)
    var = (cfg.noise_std if sigma is None else sigma) ** 2 * dt
    live = var > 0
    ent = torch.where(live, 0.5 * torch.log(2 * math.pi * math.e * torch.where(live, var, torch.ones_like(var))),
                      torch.zeros_like(var))
    return ent.sum(-1) * cfg.action_dim
