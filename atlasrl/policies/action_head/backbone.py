"""Backbones: what the action expert is conditioned on. Each maps (prompt ids, image) to context tokens.

    bb = build_backbone(cfg)                       # ActionHeadConfig.backbone: "hf_vl" | "atlas"
    ids = bb.tokenize("reach the red dot", image)  # actor side, once per decision (stored in TurnRecord.prompt_ids)
    ctx, mask = bb([ids, ...], [image, ...])       # (B, N, C), (B, N) True = real token; both sides

- ``HFVLBackbone``: any Hugging Face VL model directory (the tiny Qwen2.5-VL of atlasrl/models/tiny.py, or a
  real Qwen2.5-VL): the chat-templated prompt with its image, the LM's last hidden states over the prompt.
  Batching and M-RoPE positions come from ``atlasrl.models.logprobs.build_batch``, like the text policies.
- ``AtlasBackbone``: AtlasVLA's composition: a patch embedding, an optional DINOv2-style ViT tower, an optional
  geometry encoder (a stand-in with VGGT's interface, or a TorchScript module by path: VGGT weights are not
  shipped) and an optional causal LM over the instruction (Qwen3, as AtlasVLA uses Qwen3-0.6B-Base). Their
  tokens are projected to one width, tagged by part and concatenated: the expert's cross-attention fuses them.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from atlasrl.policies.action_head.config import ActionHeadConfig

PARTS = ("patch_embed", "vit", "geometry", "language", "keypoints")


def _images(images: Sequence[np.ndarray], size: int, device) -> torch.Tensor:
    """uint8 (H, W, 3) frames -> float (B, 3, size, size) in [0, 1]."""
    x = torch.from_numpy(np.stack([np.asarray(i, dtype=np.uint8) for i in images])).to(device)
    x = x.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (size, size):
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


class GeometryStandIn(nn.Module):
    """Stand-in for VGGT's aggregator: image -> per-patch tokens, from pixels plus their (x, y) coordinates
    (VGGT's output is geometry per patch: depth, point maps). Same interface as a traced real encoder."""

    def __init__(self, patch: int, width: int):
        super().__init__()
        mid = max(patch // 2, 1)
        self.net = nn.Sequential(nn.Conv2d(5, 32, 2, stride=2), nn.GELU(), nn.Conv2d(32, width, mid, stride=mid))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        ys = torch.linspace(-1, 1, H, device=x.device, dtype=x.dtype).view(1, 1, H, 1).expand(B, 1, H, W)
        xs = torch.linspace(-1, 1, W, device=x.device, dtype=x.dtype).view(1, 1, 1, W).expand(B, 1, H, W)
        return self.net(torch.cat([x, xs, ys], 1)).flatten(2).transpose(1, 2)


def _load_exported(path: str) -> nn.Module:
    """A geometry encoder saved with ``torch.export.save`` (e.g. VGGT's aggregator wrapped to (B, 3, H, W) -> (B, N, C))."""
    if not Path(path).exists():
        raise FileNotFoundError(f"action_head.geometry: {path} does not exist (VGGT weights are not shipped; see docs/action_head.md)")
    return torch.export.load(path).module()


class SpatialKeypoints(nn.Module):
    """Conv features -> per channel the softmax-weighted mean (x, y) of the image: k keypoint tokens."""

    def __init__(self, k: int, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, k, 3, padding=1))
        # 1-D: FSDP2 shards no scalars. Starts sharp: at 1 the softmax over small initial activations is nearly
        # uniform, every keypoint sits near the centre and the image barely reaches the expert.
        self.temperature = nn.Parameter(torch.full((1,), 0.05))
        self.proj = nn.Linear(2, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.net(x)
        B, K, H, W = f.shape
        attn = torch.softmax(f.flatten(2) / self.temperature, -1).view(B, K, H, W)
        ys = torch.linspace(-1, 1, H, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1, 1, W, device=x.device, dtype=x.dtype)
        coords = torch.stack([(attn.sum(2) * xs).sum(-1), (attn.sum(3) * ys).sum(-1)], -1)   # (B, K, 2)
        return self.proj(coords)


def tiny_dinov2(cfg: ActionHeadConfig) -> nn.Module:
    """A DINOv2 ViT (transformers' Dinov2Model) from a small config: random weights, built offline."""
    from transformers import Dinov2Config, Dinov2Model

    return Dinov2Model(Dinov2Config(hidden_size=cfg.vision_width, num_hidden_layers=2, num_attention_heads=4,
                                    mlp_ratio=2, patch_size=cfg.patch_size,
                                    image_size=cfg.image_size, layerscale_value=1.0))


class AtlasBackbone(nn.Module):
    def __init__(self, cfg: ActionHeadConfig):
        super().__init__()
        self.cfg = cfg
        C = cfg.vision_width
        self.context_dim = C
        n = (cfg.image_size // cfg.patch_size) ** 2
        self.patch_embed = nn.Conv2d(3, C, cfg.patch_size, stride=cfg.patch_size)
        self.patch_pos = nn.Parameter(torch.randn(n, C) * 0.02)
        self.keypoints = SpatialKeypoints(cfg.keypoints, C) if cfg.keypoints else None
        self.vit: nn.Module | None = None
        if cfg.vit:
            from transformers import Dinov2Model

            vit: Any = tiny_dinov2(cfg) if cfg.vit == "tiny" else Dinov2Model.from_pretrained(cfg.vit)
            self.vit = vit
            self.vit_proj = nn.Linear(int(vit.config.hidden_size), C)
        self.geometry: nn.Module | None = None
        if cfg.geometry:
            self.geometry = GeometryStandIn(cfg.patch_size, C) if cfg.geometry == "standin" else _load_exported(cfg.geometry)
            with torch.no_grad():
                g = self.geometry(torch.zeros(1, 3, cfg.image_size, cfg.image_size))
            self.geometry_proj = nn.Linear(g.shape[-1], C)
        self.language: nn.Module | None = None
        self.tokenizer = None
        if cfg.model:
            from atlasrl.models.load import load_model, load_tokenizer

            language = load_model(cfg.model).model          # the decoder stack: hidden states, no lm_head
            self.language = language
            self.tokenizer = load_tokenizer(cfg.model)
            self.language_proj = nn.Linear(int(language.config.hidden_size), C)
        self.part_type = nn.Parameter(torch.zeros(len(PARTS), C))

    def tokenize(self, text: str, image: np.ndarray | None = None) -> list[int]:
        if self.tokenizer is None:
            return []
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) or [int(self.tokenizer.pad_token_id or 0)]

    def forward(self, prompt_ids: Sequence[Sequence[int]], images: Sequence[np.ndarray]):
        dev = self.patch_pos.device
        x = _images(images, self.cfg.image_size, dev)
        B = x.shape[0]
        parts = [self.patch_embed(x).flatten(2).transpose(1, 2) + self.patch_pos + self.part_type[0]]
        if self.keypoints is not None:
            parts.append(self.keypoints(x) + self.part_type[4])
        if self.vit is not None:
            mean = torch.tensor([0.485, 0.456, 0.406], device=dev).view(1, 3, 1, 1)
            std = torch.tensor([0.229, 0.224, 0.225], device=dev).view(1, 3, 1, 1)
            parts.append(self.vit_proj(self.vit(pixel_values=(x - mean) / std).last_hidden_state) + self.part_type[1])
        if self.geometry is not None:
            parts.append(self.geometry_proj(self.geometry(x)) + self.part_type[2])
        masks = [torch.ones(B, sum(p.shape[1] for p in parts), dtype=torch.bool, device=dev)]
        if self.language is not None:
            L = max(len(p) for p in prompt_ids)
            ids = torch.zeros(B, L, dtype=torch.long, device=dev)
            am = torch.zeros(B, L, dtype=torch.long, device=dev)
            for b, p in enumerate(prompt_ids):
                ids[b, : len(p)] = torch.tensor(list(p), dtype=torch.long)
                am[b, : len(p)] = 1
            h = self.language(input_ids=ids, attention_mask=am, use_cache=False).last_hidden_state
            parts.append(self.language_proj(h) + self.part_type[3])
            masks.append(am.bool())
        return torch.cat(parts, 1), torch.cat(masks, 1)

    def part_modules(self) -> dict[str, list[nn.Module]]:
        """The modules of each freezable part."""
        out: dict[str, list[nn.Module]] = {"patch_embed": [self.patch_embed]}
        if self.keypoints is not None:
            out["keypoints"] = [self.keypoints]
        if self.vit is not None:
            out["vit"] = [self.vit]
        if self.geometry is not None:
            out["geometry"] = [self.geometry]
        if self.language is not None:
            out["language"] = [self.language]
        return out

    def shard_units(self) -> list[nn.Module]:
        """Blocks FSDP2 shards on their own (transformer layers of the ViT and the LM)."""
        units: list[nn.Module] = []
        for m in (self.vit, self.language):
            if m is not None:
                units += [b for b in m.modules() if type(b).__name__ in set(getattr(m, "_no_split_modules", None) or [])]
        return units


class HFVLBackbone(nn.Module):
    """A Hugging Face VL model (Qwen2-VL / Qwen2.5-VL) over the chat prompt with its image."""

    def __init__(self, cfg: ActionHeadConfig):
        super().__init__()
        from atlasrl.models.load import load_policy

        self.cfg = cfg
        self.info = load_policy(Path(cfg.model), with_model=False)
        if not self.info.is_vl:
            raise ValueError(f"action_head.model: {cfg.model} is not a VL model directory")
        from atlasrl.models.load import load_model

        self.lm = load_model(cfg.model)
        self.context_dim = self.lm.config.get_text_config().hidden_size

    def tokenize(self, text: str, image: np.ndarray | None = None) -> list[int]:
        from atlasrl.models.chat import encode_prompt, user

        images = [] if image is None else [image]
        return encode_prompt(self.info, [user(text, images=len(images))], images).input_ids

    def forward(self, prompt_ids: Sequence[Sequence[int]], images: Sequence[np.ndarray]):
        from atlasrl.models.logprobs import Sample, build_batch
        from atlasrl.models.positions import mm_token_type_ids

        pad = self.info.pad_token_id
        batch = build_batch(self.info, [Sample(list(p), [pad], images=[img]) for p, img in zip(prompt_ids, images)],
                            device=next(self.lm.parameters()).device)
        S = batch.input_ids.shape[1] - 1
        kw = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                  pixel_values=batch.pixel_values, image_grid_thw=batch.image_grid_thw, use_cache=False,
                  mm_token_type_ids=mm_token_type_ids(batch.input_ids, int(self.info.image_token_id or 0)))
        h = self.lm.model(**kw).last_hidden_state
        return h[:, :S], batch.attention_mask[:, :S].bool()

    def part_modules(self) -> dict[str, list[nn.Module]]:
        return {"language": [self.lm]}

    def shard_units(self) -> list[nn.Module]:
        blocks = set(getattr(self.lm, "_no_split_modules", None) or [])
        return [m for m in self.lm.modules() if type(m).__name__ in blocks]


def build_backbone(cfg: ActionHeadConfig) -> AtlasBackbone | HFVLBackbone:
    return HFVLBackbone(cfg) if cfg.backbone == "hf_vl" else AtlasBackbone(cfg)
