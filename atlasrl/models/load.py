"""Load a policy (model + tokenizer + image processor) from a local HF directory.

    policy = load_policy("/models/Qwen2.5-VL-3B-Instruct")   # or a tiny model dir
    policy.model, policy.tokenizer, policy.image_processor, policy.is_vl

Works for any causal LM (``AutoModelForCausalLM``) and for Qwen2-VL /
Qwen2.5-VL checkpoints. Images are handled by the image processor and our own
placeholder expansion (atlasrl.models.chat), not by the HF ``Processor``:
that class needs torchvision, which cannot be imported beside CPU torch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VL_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl")


@dataclass
class Policy:
    model: Any                      # transformers PreTrainedModel, eval mode
    tokenizer: Any                  # PreTrainedTokenizerBase with a chat template
    image_processor: Any | None     # Qwen2-VL image processor (VL only)
    path: Path
    is_vl: bool
    image_token_id: int | None = None
    eos_token_ids: list[int] = field(default_factory=list)  # generation stops on any of these
    pad_token_id: int = 0
    spatial_merge_size: int = 2     # VL: vision patches merged per side into one LLM token
    vocab_size: int | None = None   # rows of the embedding (token ids must be below it)

    @property
    def merge_size(self) -> int:
        return int(getattr(self.image_processor, "merge_size", self.spatial_merge_size))


def read_config(path: str | Path) -> dict:
    cfg = Path(path) / "config.json"
    if not cfg.exists():
        raise FileNotFoundError(f"{path}: no config.json (not a Hugging Face model directory)")
    return json.loads(cfg.read_text())


def is_vl_dir(path: str | Path) -> bool:
    return read_config(path).get("model_type") in VL_MODEL_TYPES


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    path = Path(path)
    tok = AutoTokenizer.from_pretrained(path)
    if not tok.chat_template:
        # Older Qwen-VL dirs keep the template beside the processor only.
        for name in ("chat_template.jinja", "chat_template.json"):
            f = path / name
            if f.exists():
                text = f.read_text()
                tok.chat_template = json.loads(text)["chat_template"] if name.endswith(".json") else text
                break
    if not tok.chat_template:
        raise ValueError(f"{path}: tokenizer has no chat template")
    return tok


def load_image_processor(path: str | Path):
    """The PIL backend of Qwen2-VL's image processor (same maths as the torchvision one)."""
    from transformers import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil.from_pretrained(path)


def load_model(path: str | Path, dtype: str = "float32", device: str = "cpu", attn: str = "sdpa"):
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()         # "Loading weights" bars on every load
    cfg = read_config(path)
    kwargs = dict(dtype=getattr(torch, dtype), attn_implementation=attn)
    cls: Any  # a transformers model class
    if cfg.get("model_type") == "qwen2_5_vl":
        from transformers import Qwen2_5_VLForConditionalGeneration as cls
    elif cfg.get("model_type") == "qwen2_vl":
        from transformers import Qwen2VLForConditionalGeneration as cls
    else:
        cls = AutoModelForCausalLM
    model = cls.from_pretrained(path, **kwargs).to(device)
    model.eval()
    return model


def load_policy(path: str | Path, dtype: str = "float32", device: str = "cpu", attn: str = "sdpa",
                with_model: bool = True) -> Policy:
    """Model, tokenizer and (VL) image processor; ``with_model=False`` skips the weights."""
    path = Path(path)
    cfg = read_config(path)
    is_vl = cfg.get("model_type") in VL_MODEL_TYPES
    tok = load_tokenizer(path)
    eos = _eos_ids(path, cfg, tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos[0]
    return Policy(
        model=load_model(path, dtype, device, attn) if with_model else None,
        tokenizer=tok,
        image_processor=load_image_processor(path) if is_vl else None,
        path=path,
        is_vl=is_vl,
        image_token_id=cfg.get("image_token_id") if is_vl else None,
        eos_token_ids=eos,
        pad_token_id=int(pad),
        spatial_merge_size=int(cfg.get("vision_config", {}).get("spatial_merge_size", 2)),
        vocab_size=cfg.get("text_config", {}).get("vocab_size", cfg.get("vocab_size")),
    )


def _eos_ids(path: Path, cfg: dict, tok) -> list[int]:
    ids: list[int] = []
    gen = path / "generation_config.json"
    sources = [json.loads(gen.read_text()).get("eos_token_id")] if gen.exists() else []
    sources += [cfg.get("eos_token_id"), cfg.get("text_config", {}).get("eos_token_id"), tok.eos_token_id]
    for s in sources:
        for i in (s if isinstance(s, list) else [s]):
            if i is not None and int(i) not in ids:
                ids.append(int(i))
    if not ids:
        raise ValueError(f"{path}: no eos token id in generation_config, config or tokenizer")
    return ids
