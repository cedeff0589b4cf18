"""Rotary position ids for padded batches, text (1-D) and Qwen-VL M-RoPE (3-D).

Both the engines (prefill with left padding, then one token at a time) and the
learner (teacher forcing, right padding) build positions here, so a token gets
the same position on both sides whatever the padding. Padding slots get 0 (they
are masked out anyway).

M-RoPE is computed here from token ids and image grids alone (no model), so the
learner can batch without holding the model; it matches HF's ``get_rope_index``
(tested). Note that on transformers 5 HF's own forward needs ``mm_token_type_ids``
(1 where the token is an image placeholder) to compute them; without it the model
silently falls back to 1-D positions for image tokens.
"""
from __future__ import annotations

import torch


def text_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L): 0,1,2,... over the real tokens of each row."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.clamp_min(0) * attention_mask.long()


def mm_token_type_ids(input_ids: torch.Tensor, image_token_id: int) -> torch.Tensor:
    return (input_ids == image_token_id).int()


def prompt_positions(input_ids: torch.Tensor, attention_mask: torch.Tensor, is_vl: bool,
                     image_token_id: int | None = None, image_grid_thw: torch.Tensor | None = None,
                     spatial_merge_size: int = 2) -> torch.Tensor:
    """(B, L) for text models, (3, B, L) for Qwen-VL models (no model needed)."""
    if not is_vl:
        return text_positions(attention_mask)
    if image_grid_thw is None or image_grid_thw.numel() == 0:
        return text_positions(attention_mask).unsqueeze(0).expand(3, -1, -1).clone()
    assert image_token_id is not None, "a VL prompt with images needs image_token_id"
    return mrope_positions(input_ids, attention_mask, image_grid_thw, image_token_id, spatial_merge_size)


def mrope_positions(input_ids: torch.Tensor, attention_mask: torch.Tensor, image_grid_thw: torch.Tensor,
                    image_token_id: int, spatial_merge_size: int) -> torch.Tensor:
    """Qwen2-VL / Qwen2.5-VL 3-D positions for still images (HF ``get_rope_index``'s rule).

    Text runs count up on all three axes. An image of merged grid (t, h, w) placed at
    position p gets (p + t_i, p + h_i, p + w_i); the text after it resumes at
    p + max(h, w). Images are consumed from ``image_grid_thw`` in row order.
    """
    B, L = input_ids.shape
    pos = torch.zeros(3, B, L, dtype=torch.long)
    grids = iter(image_grid_thw.tolist())
    for b in range(B):
        keep = attention_mask[b].bool().cpu()
        toks = input_ids[b].cpu()[keep].tolist()
        parts, cur, i = [], 0, 0
        while i < len(toks):
            if toks[i] == image_token_id:
                try:
                    t, h, w = next(grids)
                except StopIteration:
                    raise ValueError("more image token runs than image grids") from None
                gh, gw = h // spatial_merge_size, w // spatial_merge_size
                n = t * gh * gw
                if toks[i:i + n] != [image_token_id] * n:
                    raise ValueError(f"row {b}: an image of grid {(t, h, w)} needs {n} consecutive image tokens")
                tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(gh), torch.arange(gw), indexing="ij")
                parts.append(torch.stack([tt, hh, ww]).reshape(3, -1) + cur)
                cur, i = cur + max(gh, gw), i + n
            else:
                j = i
                while j < len(toks) and toks[j] != image_token_id:
                    j += 1
                parts.append((torch.arange(j - i) + cur).expand(3, -1))
                cur, i = cur + j - i, j
        if parts:
            pos[:, b, keep] = torch.cat(parts, dim=1)
    if next(grids, None) is not None:
        raise ValueError("more image grids than image token runs")
    return pos.to(input_ids.device)


def next_positions(last: torch.Tensor) -> torch.Tensor:
    """Positions of the next token given those of the last one: +1 on every axis.

    After the last image every M-RoPE axis continues from the same text
    position, so the 3-D case is the 1-D rule applied to each axis.
    """
    return last + 1
