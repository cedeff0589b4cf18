"""Chat prompts with images -> token ids and vision inputs, Qwen-VL style.

    messages = [system("Play Sokoban."), user("Where next?", images=1)]
    enc = encode_prompt(policy, messages, images=[frame])    # frame: uint8 HxWx3
    enc.input_ids            # chat template applied, one <|image_pad|> per merged patch
    enc.pixel_values, enc.image_grid_thw                     # None for text-only prompts

Messages follow the HF chat format: ``{"role": ..., "content": str | [parts]}``
with parts ``{"type": "text", "text": ...}`` or ``{"type": "image"}``; the
images are passed separately, in the order of their ``{"type": "image"}`` parts.
The expansion of each image placeholder is the Qwen2-VL processor's rule:
``prod(image_grid_thw) / merge_size**2`` copies of ``<|image_pad|>``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


class PromptError(ValueError):
    """A prompt that cannot be encoded (placeholder/image count mismatch, bad image)."""


def system(text: str) -> dict:
    return {"role": "system", "content": text}


def user(text: str, images: int = 0) -> dict:
    """A user turn: ``images`` image placeholders, then the text."""
    return {"role": "user", "content": [{"type": "image"}] * images + [{"type": "text", "text": text}]}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def count_images(messages: Sequence[dict]) -> int:
    n = 0
    for m in messages:
        if isinstance(m.get("content"), list):
            n += sum(1 for part in m["content"] if part.get("type") == "image" or "image" in part)
    return n


def render(tokenizer, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)


def check_image(img: Any, where: str = "image") -> np.ndarray:
    arr = np.asarray(img)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise PromptError(f"{where}: expected uint8 HxWx3, got {arr.dtype} {arr.shape}")
    return arr


def encode_images(image_processor, images: Sequence[np.ndarray]):
    """(pixel_values, image_grid_thw) as torch tensors, or (None, None) without images."""
    if not images:
        return None, None
    from PIL import Image

    pil = [Image.fromarray(check_image(img, f"images[{i}]")) for i, img in enumerate(images)]
    out = image_processor(images=pil, return_tensors="pt")
    return out["pixel_values"], out["image_grid_thw"]


@dataclass
class EncodedPrompt:
    input_ids: list[int]
    pixel_values: Any = None        # torch.FloatTensor (num_patches, patch_dim) or None
    image_grid_thw: Any = None      # torch.LongTensor (num_images, 3) or None
    text: str = ""


def encode_prompt(policy, messages: Sequence[dict], images: Sequence[np.ndarray] = (),
                  add_generation_prompt: bool = True) -> EncodedPrompt:
    """Apply the chat template and expand image placeholders (see module doc)."""
    n_placeholders = count_images(messages)
    if n_placeholders != len(images):
        raise PromptError(f"messages have {n_placeholders} image placeholders but {len(images)} images were given")
    if images and not policy.is_vl:
        raise PromptError("this model is text-only; the prompt has images")
    text = render(policy.tokenizer, messages, add_generation_prompt)
    pixel_values, grid = encode_images(policy.image_processor, images)
    if images:
        pad = policy.tokenizer.convert_ids_to_tokens(policy.image_token_id)
        pieces = text.split(pad)
        if len(pieces) - 1 != len(images):
            raise PromptError(f"rendered prompt has {len(pieces) - 1} {pad} tokens for {len(images)} images")
        counts = (grid.prod(-1) // policy.merge_size**2).tolist()
        text = pieces[0] + "".join(pad * n + rest for n, rest in zip(counts, pieces[1:]))
    ids = policy.tokenizer(text, add_special_tokens=False)["input_ids"]
    return EncodedPrompt(input_ids=list(ids), pixel_values=pixel_values, image_grid_thw=grid, text=text)


def image_token_counts(policy, images: Sequence[np.ndarray]) -> list[int]:
    """How many ``<|image_pad|>`` tokens each image expands to."""
    _, grid = encode_images(policy.image_processor, images)
    return [] if grid is None else (grid.prod(-1) // policy.merge_size**2).tolist()
