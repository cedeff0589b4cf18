"""Action-head turns for the learner: TurnRecord (ACTION_MODE_FLOW) -> FlowSeq -> ChunkBatch micro-batches.

    seqs = episode_flow_seqs(ep, index, weight)         # one FlowSeq per decision
    batches = pack_flow(seqs, per_batch=16)
    mb = collate_flow(batches[0])                       # the same keys as the text collate: the trainer's loss
                                                        # code runs unchanged, one "token" per denoising step

Also the actor side: ``turn_record`` writes what the engine returned into a TurnRecord.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from atlasrl import codec
from atlasrl.policies.action_head.config import ActionHeadConfig
from atlasrl.policies.action_head.expert import time_grid
from atlasrl.policies.action_head.policy import ChunkBatch
from atlasrl.v1 import trajectory_pb2


@dataclass
class FlowSeq:
    """One decision as a training row (the fields the trainer reads on a text ``Seq`` too)."""

    prompt_ids: list[int]
    image: np.ndarray
    path: np.ndarray                 # (K + 1, H, D) float32
    times: np.ndarray                # (K + 1, H) float32
    behav_logp: list[float]          # K
    loss_mask: list[int]             # K
    episode: int
    turn: int
    weight: float
    temperature: float = 1.0
    advantage: float = 0.0
    ret: float = 0.0
    old_value: float = 0.0
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.behav_logp)


def action_chunk(gen_extra: dict) -> trajectory_pb2.ActionChunk:
    """TurnRecord.chunk from an action-head engine's Generation.extra."""
    f32 = lambda k: codec.encode(np.asarray(gen_extra[k], np.float32), compress=False)  # noqa: E731
    return trajectory_pb2.ActionChunk(path=f32("path"), times=f32("times"), sent=f32("chunk"))


def turn_record(prompt_ids: list[int], image: np.ndarray, gen_extra: dict, logprobs: list[float]) -> trajectory_pb2.TurnRecord:
    """The flow part of an ACTION_MODE_FLOW turn (rewards and versions are the caller's)."""
    return trajectory_pb2.TurnRecord(
        prompt_ids=prompt_ids, logprobs=logprobs, loss_mask=[1] * len(logprobs), temperature=1.0,
        images=[codec.encode(image)], action_mode=trajectory_pb2.ACTION_MODE_FLOW, chunk=action_chunk(gen_extra))


def episode_flow_seqs(ep: trajectory_pb2.Episode, index: int, weight: float) -> list[FlowSeq]:
    out = []
    for t, turn in enumerate(ep.turns):
        if turn.action_mode != trajectory_pb2.ACTION_MODE_FLOW:
            raise ValueError(f"episode {ep.episode_id} turn {t}: action_mode {turn.action_mode}, expected ACTION_MODE_FLOW")
        path, times = codec.decode(turn.chunk.path, writable=True), codec.decode(turn.chunk.times, writable=True)
        if path.ndim != 3 or times.shape != path.shape[:2] or len(turn.logprobs) != path.shape[0] - 1:
            raise ValueError(f"episode {ep.episode_id} turn {t}: chunk path {path.shape}, times {times.shape} and "
                             f"{len(turn.logprobs)} log-probs do not agree")
        out.append(FlowSeq(list(turn.prompt_ids), codec.decode(turn.images[0], writable=True), path, times,
                           list(turn.logprobs), list(turn.loss_mask), index, t, weight))
    return out


def flow_size(ep: trajectory_pb2.Episode) -> int:
    """Work of an episode for sharding across ranks: its decisions."""
    return len(ep.turns)


def pack_flow(seqs: list[FlowSeq], per_batch: int) -> list[list[FlowSeq]]:
    return [seqs[i : i + per_batch] for i in range(0, len(seqs), per_batch)]


def dummy_flow_seq(cfg: ActionHeadConfig) -> FlowSeq:
    """A zero-weight decision for ranks that must join a collective without data."""
    K, H, D, s = cfg.steps, cfg.horizon, cfg.action_dim, cfg.image_size
    return FlowSeq([0], np.zeros((s, s, 3), np.uint8), np.zeros((K + 1, H, D), np.float32),
                   time_grid(cfg, 1)[0].numpy(), [0.0] * K, [0] * K, -1, 0, 0.0)


def collate_flow(seqs: list[FlowSeq]) -> dict:
    K = max(len(s) for s in seqs)
    if any(len(s) != K for s in seqs):
        raise ValueError("a micro-batch mixes chunks with different numbers of denoising steps")
    batch = ChunkBatch([s.prompt_ids for s in seqs], [s.image for s in seqs],
                       torch.from_numpy(np.stack([s.path for s in seqs])), torch.from_numpy(np.stack([s.times for s in seqs])))
    B = len(seqs)
    return {"tf": batch, "temperature": 1.0, "behav_logp": torch.tensor([s.behav_logp for s in seqs], dtype=torch.float32),
            "loss_mask": torch.tensor([s.loss_mask for s in seqs], dtype=torch.float32),
            "episode_weight": torch.tensor([s.weight for s in seqs]).unsqueeze(1).expand(B, K).clone(), "seqs": seqs}


def validate_flow_turn(t: trajectory_pb2.TurnRecord) -> None:
    """The learner's check of an ACTION_MODE_FLOW turn on Push; ValueError naming the field."""
    import math

    if t.response_ids:
        raise ValueError("response_ids must be empty for ACTION_MODE_FLOW (the action is chunk.sent)")
    try:
        path, times = codec.decode(t.chunk.path), codec.decode(t.chunk.times)
        codec.decode(t.chunk.sent)
        images = [codec.decode(i) for i in t.images]
    except codec.CodecError as e:
        raise ValueError(f"chunk: {e}") from None
    if path.ndim != 3 or path.dtype != np.float32 or not np.isfinite(path).all():
        raise ValueError(f"chunk.path must be finite float32 (K + 1, H, D), got {path.dtype} {list(path.shape)}")
    if times.shape != path.shape[:2] or not np.isfinite(times).all() or times.min() < 0 or times.max() > 1:
        raise ValueError(f"chunk.times must be (K + 1, H) = {list(path.shape[:2])} in [0, 1], got {list(times.shape)}")
    K = path.shape[0] - 1
    if len(t.logprobs) != K or not all(math.isfinite(x) for x in t.logprobs):
        raise ValueError(f"logprobs: {len(t.logprobs)} values for {K} denoising steps (must be equal and finite)")
    if len(t.loss_mask) != K or any(m not in (0, 1) for m in t.loss_mask):
        raise ValueError(f"loss_mask: {len(t.loss_mask)} entries for {K} steps (must be equal, 0 or 1)")
    if len(images) != 1 or images[0].dtype != np.uint8 or images[0].ndim != 3 or images[0].shape[2] != 3:
        raise ValueError("images: exactly one uint8 HxWx3 frame (what the backbone read)")
    for name in ("reward", "env_reward", "format_reward", "shaping_reward"):
        if not math.isfinite(getattr(t, name)):
            raise ValueError(f"{name} is not finite")
    if t.policy_version < 0:
        raise ValueError(f"policy_version {t.policy_version} is negative")
