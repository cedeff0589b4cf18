"""Episodes -> training sequences -> micro-batches of at most a token budget.

Each turn of an episode becomes one sequence ``prompt_ids + response_ids``
(the prompt already holds the history, chat template applied), with the loss
only on response tokens whose ``loss_mask`` is 1. Sequences are right-padded;
the logits that score response token i sit at position ``len(prompt) + i - 1``.
Episodes are split across ranks whole (PPO's GAE needs all turns of an
episode), balanced by token count, the same way on every rank.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from atlasrl import codec
from atlasrl.v1 import trajectory_pb2


@dataclass
class Seq:
    """One turn as a training sequence."""

    input_ids: list[int]
    prompt_len: int
    behav_logp: list[float]
    loss_mask: list[int]
    temperature: float
    choices: list[list[int]] | None  # ACTION_MODE_CHOICE candidates
    episode: int                     # index of the episode in the global batch
    turn: int
    weight: float                    # staleness weight of the episode
    images: list[np.ndarray] = field(default_factory=list)
    advantage: float = 0.0
    ret: float = 0.0                 # PPO value target
    old_value: float = 0.0

    @property
    def response(self) -> list[int]:
        return self.input_ids[self.prompt_len :]

    def __len__(self) -> int:
        return len(self.input_ids)


def episode_seqs(ep: trajectory_pb2.Episode, index: int, weight: float, decode_images: bool = False) -> list[Seq]:
    out = []
    for t, turn in enumerate(ep.turns):
        choices = [list(c.ids) for c in turn.choices] if turn.action_mode == trajectory_pb2.ACTION_MODE_CHOICE else None
        out.append(Seq(
            input_ids=list(turn.prompt_ids) + list(turn.response_ids),
            prompt_len=len(turn.prompt_ids),
            behav_logp=list(turn.logprobs),
            loss_mask=list(turn.loss_mask),
            temperature=float(turn.temperature),
            choices=choices,
            episode=index,
            turn=t,
            weight=weight,
            images=[codec.decode(img) for img in turn.images] if decode_images else [],
        ))
    return out


def shard_episodes(token_counts: list[int], world: int, rank: int) -> list[int]:
    """Episode indices for ``rank``: longest first onto the least-loaded rank (deterministic)."""
    loads = [0] * world
    owner = [0] * len(token_counts)
    for i in sorted(range(len(token_counts)), key=lambda i: (-token_counts[i], i)):
        r = min(range(world), key=lambda r: (loads[r], r))
        owner[i] = r
        loads[r] += token_counts[i]
    return [i for i, r in enumerate(owner) if r == rank]


def pack_micro_batches(seqs: list[Seq], token_budget: int) -> list[list[Seq]]:
    """Group sequences so rows x longest row <= token_budget (a longer sequence goes alone)."""
    order = sorted(seqs, key=len, reverse=True)
    batches: list[list[Seq]] = []
    cur: list[Seq] = []
    for s in order:
        longest = max([len(s)] + [len(c) for c in cur])
        if cur and (len(cur) + 1) * longest > token_budget:
            batches.append(cur)
            cur = []
        cur.append(s)
    if cur:
        batches.append(cur)
    return batches


def dummy_seq() -> Seq:
    """A zero-weight sequence for ranks that must join a collective without data."""
    return Seq([0, 0], 1, [0.0], [0], 1.0, None, episode=-1, turn=0, weight=0.0)


def collate(seqs: list[Seq], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded tensors plus flat indices of the response tokens.

    ``score_index`` [N] indexes the flattened (B*L) hidden states at the
    positions whose logits score each response token ``targets`` [N].
    ``value_index`` [B] is each row's last prompt token (the PPO state value).
    Choice-mode tokens get ``choice_rows`` [K] (indices into N) and
    ``choice_allowed`` [K, M] (allowed token ids, -1 padded).
    """
    B, L = len(seqs), max(len(s) for s in seqs)
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    attention = torch.zeros((B, L), dtype=torch.long)
    score_index, targets, behav, mask, temp, weight, row_of_token, choice_rows, allowed = [], [], [], [], [], [], [], [], []
    for b, s in enumerate(seqs):
        input_ids[b, : len(s)] = torch.tensor(s.input_ids)
        attention[b, : len(s)] = 1
        resp = s.response
        for i, tok in enumerate(resp):
            n = len(targets)
            score_index.append(b * L + s.prompt_len + i - 1)
            targets.append(tok)
            if s.choices is not None:
                choice_rows.append(n)
                allowed.append(sorted({c[i] for c in s.choices if len(c) > i and c[:i] == resp[:i]}))
        behav += s.behav_logp
        mask += s.loss_mask
        temp += [s.temperature] * len(resp)
        weight += [s.weight] * len(resp)
        row_of_token += [b] * len(resp)
    M = max((len(a) for a in allowed), default=0)
    allowed_t = torch.full((len(allowed), M), -1, dtype=torch.long)
    for k, a in enumerate(allowed):
        allowed_t[k, : len(a)] = torch.tensor(a, dtype=torch.long)
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "score_index": torch.tensor(score_index, dtype=torch.long),
        "targets": torch.tensor(targets, dtype=torch.long),
        "behav_logp": torch.tensor(behav, dtype=torch.float32),
        "loss_mask": torch.tensor(mask, dtype=torch.float32),
        "temperature": torch.tensor(temp, dtype=torch.float32),
        "episode_weight": torch.tensor(weight, dtype=torch.float32),
        "row_of_token": torch.tensor(row_of_token, dtype=torch.long),
        "value_index": torch.tensor([b * L + s.prompt_len - 1 for b, s in enumerate(seqs)], dtype=torch.long),
        "choice_rows": torch.tensor(choice_rows, dtype=torch.long),
        "choice_allowed": allowed_t,
    }


def token_count(seqs: list[Seq]) -> int:
    return sum(len(s) for s in seqs)
