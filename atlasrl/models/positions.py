"""Rotary position ids for padded batches, text (1-D) and Qwen-VL M-RoPE (3-D).

Both the engines (prefill with left padding, then one token at a time) and the
learner (teacher forcing, right padding) build positions here, so a token gets
the same position on both sides whatever the padding. Padding slots get 0 (they
are masked out anyway).

On transformers 5, Qwen-VL's ``get_rope_index`` needs ``mm_token_type_ids``
(1 where the token is an image placeholder); without it the model silently
falls back to 1-D positions for image tokens.
"""
from __future__ import annotations

import torch


def text_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L): 0,1,2,... over the real tokens of each row."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.clamp_min(0) * attention_mask.long()


def mm_token_type_ids(input_ids: torch.Tensor, image_token_id: int) -> torch.Tensor:
    return (input_ids == image_token_id).int()


def prompt_positions(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, is_vl: bool,
                     image_token_id: int | None = None, image_grid_thw: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """(B, L) for text models, (3, B, L) for Qwen-VL models."""
    if not is_vl:
        return text_positions(attention_mask)
    if image_grid_thw is None or image_grid_thw.numel() == 0:
        return text_positions(attention_mask).unsqueeze(0).expand(3, -1, -1).clone()
    base = model.model if hasattr(model.model, "get_rope_index") else model
    pos, _ = base.get_rope_index(
        input_ids,
        mm_token_type_ids=mm_token_type_ids(input_ids, image_token_id),
        image_grid_thw=image_grid_thw,
        attention_mask=attention_mask,
    )
    return pos * attention_mask.long().unsqueeze(0)


def next_positions(last: torch.Tensor) -> torch.Tensor:
    """Positions of the next token given those of the last one: +1 on every axis.

    After the last image every M-RoPE axis continues from the same text
    position, so the 3-D case is the 1-D rule applied to each axis.
    """
    return last + 1
