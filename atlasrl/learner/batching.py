"""Episodes -> training sequences -> micro-batches of at most a token budget.

Each turn of an episode becomes one sequence ``prompt_ids + response_ids``
(the prompt already holds the history, chat template applied, and its images),
with the loss only on response tokens whose ``loss_mask`` is 1. The tensors
(padding, positions incl. M-RoPE, pixel values, choice masks) are built by
``atlasrl.models.logprobs.build_batch``, the layout the actor's distribution is
defined with. Turns that need the same logits (a group's episodes on one state,
whatever action each took: ``share_key``) share one model row, and packing
counts model rows, so duplicates are put next to each other.
Episodes are split across ranks whole (PPO's GAE needs all turns of an
episode), balanced by token count, the same way on every rank.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from atlasrl import codec
from atlasrl.models.logprobs import Sample, build_batch, share_key
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
    _share_key: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def response(self) -> list[int]:
        return self.input_ids[self.prompt_len :]

    def sample(self) -> Sample:
        return Sample(self.input_ids[: self.prompt_len], self.response, images=self.images, choices=self.choices)

    def share_key(self) -> tuple:
        """``share_key`` of this turn, computed once: packing and collate both need it."""
        if self._share_key is None:
            self._share_key = share_key(self.sample())
        return self._share_key

    def __len__(self) -> int:
        return len(self.input_ids)


def episode_seqs(ep: trajectory_pb2.Episode, index: int, weight: float) -> list[Seq]:
    return [turn_seq(turn, index, t, weight) for t, turn in enumerate(ep.turns)]


def bootstrap_seq(ep: trajectory_pb2.Episode, index: int) -> Seq | None:
    """The episode's bootstrap state (PPO, a cut episode) as a sequence that trains nothing: only its value is read."""
    if not ep.HasField("bootstrap"):
        return None
    seq = turn_seq(ep.bootstrap, index, len(ep.turns), 0.0)
    seq.loss_mask = [0] * len(seq.loss_mask)
    return seq


def turn_seq(turn: trajectory_pb2.TurnRecord, index: int, t: int, weight: float) -> Seq:
    choices = [list(c.ids) for c in turn.choices] if turn.action_mode == trajectory_pb2.ACTION_MODE_CHOICE else None
    return Seq(
        input_ids=list(turn.prompt_ids) + list(turn.response_ids),
        prompt_len=len(turn.prompt_ids),
        behav_logp=list(turn.logprobs),
        loss_mask=list(turn.loss_mask),
        temperature=float(turn.temperature),
        choices=choices,
        episode=index,
        turn=t,
        weight=weight,
        images=[codec.decode(img) for img in turn.images],
    )


def shard_episodes(token_counts: list[int], world: int, rank: int) -> list[int]:
    """Episode indices for ``rank``: longest first onto the least-loaded rank (deterministic)."""
    loads = [0] * world
    owner = [0] * len(token_counts)
    for i in sorted(range(len(token_counts)), key=lambda i: (-token_counts[i], i)):
        r = min(range(world), key=lambda r: (loads[r], r))
        owner[i] = r
        loads[r] += token_counts[i]
    return [i for i, r in enumerate(owner) if r == rank]


def padded_len(seqs: list[Seq]) -> int:
    """Row length of a micro-batch: prompts left-padded to the longest, responses right-padded."""
    return max(s.prompt_len for s in seqs) + max(len(s.response) for s in seqs)


def pack_micro_batches(seqs: list[Seq], token_budget: int, share: bool = True) -> list[list[Seq]]:
    """Group sequences (one temperature per group) so model rows x padded row <= token_budget.

    Sorted by prompt length, then prompt, so turns that can share a row land in the same micro-batch.
    A sequence longer than the budget goes alone.
    """
    batches: list[list[Seq]] = []
    for temp in sorted({s.temperature for s in seqs}):
        cur: list[Seq] = []
        keys: set[tuple | int] = set()
        group = sorted((s for s in seqs if s.temperature == temp),
                       key=lambda s: (-s.prompt_len, s.input_ids[: s.prompt_len], -len(s)))
        for s in group:
            key = s.share_key() if share else id(s)
            rows = len(keys) + (key not in keys)
            if cur and rows * padded_len(cur + [s]) > token_budget:
                batches.append(cur)
                cur, keys = [], set()
            cur.append(s)
            keys.add(key)
        if cur:
            batches.append(cur)
    return batches


def dummy_seq() -> Seq:
    """A zero-weight sequence for ranks that must join a collective without data."""
    return Seq([0, 0], 1, [0.0], [0], 1.0, None, episode=-1, turn=0, weight=0.0)


def collate(seqs: list[Seq], policy, share: bool = True) -> dict:
    """A micro-batch: the shared teacher-forcing batch plus (B, R) training tensors.

    ``policy`` is an ``atlasrl.models.load.Policy`` (pad id, VL image processor);
    every sequence must share one temperature (the trainer groups them so).
    """
    temps = {s.temperature for s in seqs}
    if len(temps) != 1:
        raise ValueError(f"a micro-batch mixes temperatures {sorted(temps)}")
    tf = build_batch(policy, [s.sample() for s in seqs], share=share, keys=[s.share_key() for s in seqs] if share else None)
    B, R = tf.response_ids.shape
    behav = torch.zeros(B, R)
    mask = torch.zeros(B, R)
    for b, s in enumerate(seqs):
        n = len(s.behav_logp)
        behav[b, :n] = torch.tensor(s.behav_logp)
        mask[b, :n] = torch.tensor(s.loss_mask, dtype=torch.float32)
    weight = torch.tensor([s.weight for s in seqs]).unsqueeze(1).expand(B, R).clone()
    return {"tf": tf, "temperature": temps.pop(), "behav_logp": behav, "loss_mask": mask * tf.response_mask,
            "episode_weight": weight, "seqs": seqs}


def token_count(seqs: list[Seq]) -> int:
    return sum(len(s) for s in seqs)
