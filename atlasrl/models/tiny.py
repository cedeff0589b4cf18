"""Tiny Qwen2 / Qwen2.5-VL policies with random weights, in Hugging Face format.

    path = tiny_model_path("qwen2.5-vl", seed=0)      # built once, then cached
    policy = load_policy(path)                         # atlasrl.models.load

Real architectures (``Qwen2ForCausalLM``, ``Qwen2_5_VLForConditionalGeneration``)
built from small configs, a locally trained tokenizer (atlasrl.models.tokenizer)
and, for VL, the PIL image processor and a processor. Same arguments -> byte-
identical files. Built models are cached under ``~/.cache/atlasrl/models/``
(``ATLASRL_CACHE`` overrides the root) keyed by every build argument.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # transformers is imported lazily at run time
    from transformers import PretrainedConfig, PreTrainedModel

Arch = Literal["qwen2", "qwen2.5-vl", "qwen3"]
ARCHS: tuple[str, ...] = ("qwen2", "qwen2.5-vl", "qwen3")  # qwen3: the AtlasVLA language side (tests/action_head)
BUILD_FORMAT = 2  # bump when the build recipe changes, so caches are rebuilt


@dataclass(frozen=True)
class TinySpec:
    """Everything that decides a tiny model's bytes."""

    arch: str = "qwen2"
    seed: int = 0
    hidden: int = 128          # text hidden size
    layers: int = 2            # text decoder layers
    heads: int = 4             # attention heads (head_dim = hidden / heads)
    kv_heads: int = 2          # grouped-query KV heads
    intermediate: int = 0      # MLP width; 0 = 2 * hidden
    vocab: int = 2048          # BPE vocab target (actual size may be smaller; padded to 64)
    vision_hidden: int = 64    # VL: vision tower width
    vision_layers: int = 2     # VL: vision blocks
    max_pixels: int = 112 * 112  # VL: image processor budget (28x28 px per merged token)
    tie_embeddings: bool = True  # as Qwen2.5-3B / Qwen2.5-VL-3B

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError("hidden must divide by heads and heads by kv_heads")
        if (self.hidden // self.heads) % 8:
            raise ValueError("head_dim (hidden / heads) must be a multiple of 8")
        if self.vision_hidden % 16:
            raise ValueError("vision_hidden must be a multiple of 16 (vision heads of 16 wide)")

    def key(self) -> str:
        blob = json.dumps({"format": BUILD_FORMAT, **dataclasses.asdict(self)}, sort_keys=True)
        return f"{self.arch}-{self.seed}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def cache_root() -> Path:
    return Path(os.environ.get("ATLASRL_CACHE", Path.home() / ".cache" / "atlasrl")) / "models"


def tiny_model_path(arch: str = "qwen2", seed: int = 0, **overrides) -> Path:
    """Path of the cached tiny model for these arguments, built on first use."""
    spec = TinySpec(arch=arch, seed=seed, **overrides)
    path = cache_root() / spec.key()
    if (path / "model.safetensors").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.key()}-", dir=path.parent))
    try:
        build_tiny(spec, tmp)
        try:
            os.rename(tmp, path)       # atomic: concurrent builders never see half a model
        except OSError:
            if not (path / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def build_tiny(spec: TinySpec, out: str | os.PathLike) -> Path:
    """Build the model described by ``spec`` into ``out`` (created if missing)."""
    import torch
    from transformers.utils import logging as hf_logging

    from atlasrl.models.tokenizer import build_tokenizer

    hf_logging.disable_progress_bar()         # "Writing model shards" bars
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(vocab_size=spec.vocab)
    vocab_size = -(-len(tok) // 64) * 64
    ids = {t: tok.convert_tokens_to_ids(t) for t in
           ("<|endoftext|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")}
    text = dict(
        vocab_size=vocab_size,
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate or 2 * spec.hidden,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=spec.tie_embeddings,
    )
    torch.manual_seed(spec.seed)
    config: PretrainedConfig
    model: PreTrainedModel
    if spec.arch == "qwen2":
        from transformers import Qwen2Config, Qwen2ForCausalLM

        config = Qwen2Config(**text, rope_parameters={"rope_type": "default", "rope_theta": 1e6})
        model = Qwen2ForCausalLM(config)
    elif spec.arch == "qwen3":
        from transformers import Qwen3Config, Qwen3ForCausalLM

        config = Qwen3Config(**text, head_dim=spec.hidden // spec.heads,
                             rope_parameters={"rope_type": "default", "rope_theta": 1e6})
        model = Qwen3ForCausalLM(config)
    else:
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        head_dim = spec.hidden // spec.heads
        t = head_dim // 2 // 4                       # M-RoPE split (temporal, h, w) like Qwen's 16/24/24
        mrope = [t, (head_dim // 2 - t) // 2, head_dim // 2 - t - (head_dim // 2 - t) // 2]
        config = Qwen2_5_VLConfig(
            text_config={**text, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                                                     "mrope_section": mrope}},
            vision_config=dict(
                depth=spec.vision_layers, hidden_size=spec.vision_hidden, intermediate_size=2 * spec.vision_hidden,
                num_heads=spec.vision_hidden // 16, out_hidden_size=spec.hidden, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                fullatt_block_indexes=[spec.vision_layers - 1],
            ),
            image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
            tie_word_embeddings=spec.tie_embeddings,
        )
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)
    tok.save_pretrained(out)
    if spec.arch == "qwen2.5-vl":
        from transformers import Qwen2VLImageProcessorPil

        # Laid out like a real Qwen2.5-VL-3B-Instruct dir: the processor is named in
        # preprocessor_config.json and tokenizer_config.json (no processor_config.json).
        Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=spec.max_pixels).save_pretrained(out)
        for name in ("preprocessor_config.json", "tokenizer_config.json"):
            cfg = json.loads((out / name).read_text())
            cfg["processor_class"] = "Qwen2_5_VLProcessor"
            (out / name).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    (out / "atlasrl_tiny.json").write_text(json.dumps(dataclasses.asdict(spec), indent=1, sort_keys=True))
    return out
