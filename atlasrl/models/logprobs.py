"""Teacher-forced log-probabilities of sampled responses (the learner's recompute).

    samples = [Sample(prompt_ids, response_ids, images=[frame], choices=None), ...]
    batch = build_batch(policy, samples)                 # tensors, no grad needed yet
    logp, entropy = response_logprobs(policy.model, batch, temperature=1.0, with_entropy=True)
    # logp: (B, R) log-prob of each response token, 0 where batch.response_mask == 0

Distribution (the engines sample from exactly this one, see atlasrl.actors.engines.base):
- free mode: ``log_softmax(logits / T)`` over the whole vocabulary, T = the turn's
  temperature, or 1 when the turn was greedy (T = 0). top-p only decides which
  tokens may be drawn; it is not part of the log-prob.
- choice mode (``Sample.choices`` set): at response position i the tempered
  logits are restricted to the tokens allowed by the prefix trie of the choices
  (atlasrl.models.choice) and normalised over that set.

Layout: each row is ``[left pad][prompt][response][right pad]`` with every
response starting at the same column, so the model's own ``logits_to_keep``
picks the response logits and nothing else (memory ~ B * R * vocab) while the
forward stays the model's top-level ``forward`` (FSDP's root hooks run).
Positions: atlasrl.models.positions (M-RoPE with image grids for Qwen-VL).

Shared rows (``build_batch(..., share=True)``, what the learner uses): samples
whose log-probs need the same logits (``share_key``: same prompt, images and
response up to its last open position) run through the model once and the
logits are gathered back per sample (``row_map``). Exact, not an approximation:
in choice mode a position the trie leaves one token open has log-prob 0 and
entropy 0 whatever the logits, so a GRPO group's turns on one state share one
forward whichever action each took (about half the learner's rows on FrozenLake).
"""
from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from atlasrl.models.chat import encode_images
from atlasrl.models.choice import allowed_per_position
from atlasrl.models.positions import prompt_positions


def effective_temperature(temperature: float) -> float:
    """The temperature whose distribution the log-probs describe (greedy -> 1)."""
    return float(temperature) if temperature > 0 else 1.0


@dataclass
class Sample:
    prompt_ids: Sequence[int]
    response_ids: Sequence[int]
    images: Sequence[np.ndarray] = ()                # uint8 HxWx3, in placeholder order
    choices: Sequence[Sequence[int]] | None = None   # choice mode: candidates' token ids


@dataclass
class TeacherForcedBatch:
    input_ids: torch.Tensor          # (B, S + R)
    attention_mask: torch.Tensor     # (B, S + R)
    position_ids: torch.Tensor       # (B, S + R) or (3, B, S + R)
    response_ids: torch.Tensor       # (B, R), pad where response_mask == 0
    response_mask: torch.Tensor      # (B, R) float, 1 on real response tokens
    logits_index: torch.Tensor       # (R,) columns whose logits predict the response
    pixel_values: Any = None
    image_grid_thw: Any = None
    choice_rows: torch.Tensor | None = None     # (N,) row of each constrained position
    choice_cols: torch.Tensor | None = None     # (N,) response column of it
    choice_allowed: torch.Tensor | None = None  # (N, K) allowed token ids (padded by repetition)
    row_map: torch.Tensor | None = None         # (B,) model row of each sample when rows are shared (U < B rows)
    banned_ids: torch.Tensor | None = None      # ids never sampled (banned_response_ids), -inf here as in the engine

    def model_inputs(self) -> dict:
        kw = dict(input_ids=self.input_ids, attention_mask=self.attention_mask,
                  position_ids=self.position_ids, logits_to_keep=self.logits_index, use_cache=False)
        if self.pixel_values is not None:
            kw.update(pixel_values=self.pixel_values, image_grid_thw=self.image_grid_thw)
        return kw

    def to(self, device) -> TeacherForcedBatch:
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device))
        return self


def share_key(s: Sample) -> tuple:
    """What a sample's log-probs depend on: prompt, images and the response up to its last open position.

    Free mode: every position is open, so the key is the prompt and the response but its last token. Choice
    mode: positions where the trie allows one token only (an action's tail, the end token) are not open.
    A sample the trie rejects keys on its whole response (build_batch then names the problem).
    """
    r = list(s.response_ids)
    last_open = len(r) - 1
    if s.choices is not None:
        try:
            opened = [i for i, a in enumerate(allowed_per_position(s.choices, r)) if len(a) > 1]
            last_open = opened[-1] if opened else 0
        except ValueError:
            last_open = len(r)
    images = tuple(hashlib.blake2b(np.ascontiguousarray(im).tobytes() + repr(np.shape(im)).encode(),
                                   digest_size=16).digest() for im in s.images)
    return tuple(s.prompt_ids), tuple(r[:max(last_open, 0)]), images


def shared_rows(keys: Sequence[Hashable]) -> tuple[list[int], list[int]]:
    """(row of each item, first item of each row): equal keys share a row, rows numbered by first appearance."""
    row_of: dict[Hashable, int] = {}
    row_map, firsts = [], []
    for i, key in enumerate(keys):
        if key not in row_of:
            row_of[key] = len(firsts)
            firsts.append(i)
        row_map.append(row_of[key])
    return row_map, firsts


def build_batch(policy, samples: Sequence[Sample], device: str | torch.device = "cpu",
                share: bool = False, keys: Sequence[Hashable] | None = None) -> TeacherForcedBatch:
    """Pad, position and mask a batch; raises ValueError naming the bad sample.

    ``share``: samples with equal ``share_key`` get one model row (``row_map``); the response and choice
    tensors stay per sample. ``keys``: the samples' ``share_key``s when the caller has them already.
    """
    if keys is not None and len(keys) != len(samples):
        raise ValueError(f"{len(keys)} share keys for {len(samples)} samples")
    if not samples:
        raise ValueError("empty batch")
    vocab = policy.vocab_size
    S = max(len(s.prompt_ids) for s in samples)
    R = max(len(s.response_ids) for s in samples)
    B, pad = len(samples), policy.pad_token_id
    resp = torch.full((B, R), pad, dtype=torch.long)
    resp_mask = torch.zeros((B, R))
    rows, cols, allowed = [], [], []
    for b, s in enumerate(samples):
        p, r = list(s.prompt_ids), list(s.response_ids)
        if not p or not r:
            raise ValueError(f"sample {b}: empty prompt or response")
        if vocab is not None and (min(p + r) < 0 or max(p + r) >= vocab):
            raise ValueError(f"sample {b}: token id outside the vocabulary [0, {vocab})")
        resp[b, :len(r)] = torch.tensor(r)
        resp_mask[b, :len(r)] = 1
        _check_image_tokens(policy, b, p + r, s.images)
        if s.choices is not None:
            try:
                per_pos = allowed_per_position(s.choices, r)
            except ValueError as e:
                raise ValueError(f"sample {b}: {e}") from None
            for i, a in enumerate(per_pos):
                rows.append(b), cols.append(i), allowed.append(a)
    if share and keys is None:
        keys = [share_key(s) for s in samples]
    row_map, reps = shared_rows(keys if share else range(B))
    U = len(reps)
    ids = torch.full((U, S + R), pad, dtype=torch.long)
    mask = torch.zeros((U, S + R), dtype=torch.long)
    images: list[np.ndarray] = []
    for u, b in enumerate(reps):
        p, r = list(samples[b].prompt_ids), list(samples[b].response_ids)
        ids[u, S - len(p):S + len(r)] = torch.tensor(p + r)
        mask[u, S - len(p):S + len(r)] = 1
        images.extend(samples[b].images)
    pixel_values, grid = encode_images(policy.image_processor, images) if images else (None, None)
    try:
        positions = prompt_positions(ids, mask, policy.is_vl, policy.image_token_id, grid, policy.spatial_merge_size)
    except ValueError as e:
        raise ValueError(f"batch: {e}") from None
    batch = TeacherForcedBatch(
        input_ids=ids, attention_mask=mask, position_ids=positions, response_ids=resp,
        response_mask=resp_mask, logits_index=torch.arange(S - 1, S + R - 1),
        pixel_values=pixel_values, image_grid_thw=grid,
        row_map=torch.tensor(row_map) if U < B else None,
        banned_ids=torch.tensor(banned_response_ids(policy)) if banned_response_ids(policy) else None,
    )
    if rows:
        k = max(len(a) for a in allowed)
        batch.choice_rows, batch.choice_cols = torch.tensor(rows), torch.tensor(cols)
        batch.choice_allowed = torch.tensor([a + [a[0]] * (k - len(a)) for a in allowed])
    return batch.to(device)


def banned_response_ids(policy) -> list[int]:
    """Token ids no response may hold, masked (-inf) in the engines' sampling and in ``response_logprobs`` alike:
    a VL model's image placeholder, since its forward reads every one in the ids as an image slot, so a response
    holding one (a random-weights model writing free text samples it now and then) could not be replayed."""
    return [policy.image_token_id] if policy.is_vl and policy.image_token_id is not None else []


def _check_image_tokens(policy, b: int, ids: list[int], images) -> None:
    if not policy.is_vl:
        if len(images):
            raise ValueError(f"sample {b}: images given to a text-only model")
        return
    n_tokens = sum(1 for t in ids if t == policy.image_token_id)
    if len(images) == 0 and n_tokens == 0:
        return
    from atlasrl.models.chat import image_token_counts

    expected = sum(image_token_counts(policy, images)) if len(images) else 0
    if n_tokens != expected:
        raise ValueError(f"sample {b}: {n_tokens} image tokens in the ids but the {len(images)} "
                         f"images expand to {expected}")


def constrain_choices(scaled: torch.Tensor, batch: TeacherForcedBatch) -> torch.Tensor:
    """Set logits outside each choice position's allowed set to -inf (out of place)."""
    if batch.choice_rows is None:
        return scaled
    sub = scaled[batch.choice_rows, batch.choice_cols]                     # (N, V)
    keep = torch.zeros_like(sub, dtype=torch.bool).scatter_(1, batch.choice_allowed, True)
    sub = sub.masked_fill(~keep, float("-inf"))
    return scaled.index_put((batch.choice_rows, batch.choice_cols), sub)


def response_logprobs(model, batch: TeacherForcedBatch, temperature: float = 1.0,
                      with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, R) log-probs of the response tokens (differentiable), and optionally entropies."""
    logits = model(**batch.model_inputs()).logits                         # (U, R, V)
    if batch.row_map is not None:
        logits = logits[batch.row_map]                                     # (B, R, V)
    scaled = constrain_choices(logits.float() / effective_temperature(temperature), batch)
    if batch.banned_ids is not None:
        scaled = scaled.index_fill(-1, batch.banned_ids, float("-inf"))
    lse = torch.logsumexp(scaled, dim=-1)
    logp = (scaled.gather(-1, batch.response_ids.unsqueeze(-1)).squeeze(-1) - lse) * batch.response_mask
    entropy = None
    if with_entropy:
        p = torch.softmax(scaled, dim=-1)
        entropy = (lse - (p * scaled.nan_to_num(neginf=0.0)).sum(-1)) * batch.response_mask
    return logp, entropy


@torch.no_grad()
def sample_logprobs(policy, samples: Sequence[Sample], temperature: float = 1.0) -> list[list[float]]:
    """Convenience: per-sample lists of response-token log-probs, no grad."""
    batch = build_batch(policy, samples)
    logp, _ = response_logprobs(policy.model, batch, temperature)
    return [logp[b, :len(s.response_ids)].tolist() for b, s in enumerate(samples)]
