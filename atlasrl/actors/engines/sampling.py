"""Token sampling from tempered logits: choice masks, top-p, greedy.

Kept apart from the engine loop so the distribution is easy to read and test:
log-probs are taken from ``log_softmax(masked tempered logits)`` *before* top-p
(see atlasrl.actors.engines.base for the contract).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


def mask_to_allowed(scaled: torch.Tensor, allowed: Sequence[Sequence[int] | None]) -> torch.Tensor:
    """Rows with an allowed set keep only those logits; ``None`` rows are untouched."""
    keep = torch.ones_like(scaled, dtype=torch.bool)
    for row, ids in enumerate(allowed):
        if ids is not None:
            keep[row] = False
            keep[row, list(ids)] = True
    return scaled.masked_fill(~keep, float("-inf"))


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail outside the smallest set whose mass reaches ``top_p`` (unnormalised)."""
    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True)
    before = sorted_p.cumsum(-1) - sorted_p          # mass strictly before each token
    sorted_p = sorted_p.masked_fill(before >= top_p, 0.0)   # the top token always stays
    return torch.zeros_like(probs).scatter_(-1, order, sorted_p)


def sample_tokens(scaled: torch.Tensor, greedy: bool, top_p: float,
                  generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens (B,), their log-probs (B,)) from tempered, already masked logits (B, V)."""
    logp = torch.log_softmax(scaled, dim=-1)
    if greedy:
        tokens = scaled.argmax(-1)
    else:
        probs = top_p_filter(logp.exp(), top_p)
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return tokens, logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
