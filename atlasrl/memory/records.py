"""EpisodeRecord (protobuf) -> validated Episode, before any state changes.

Every check names the episode and the offending field, so a rejected episode's
status tells the sender exactly what to fix. Oversized input raises TooLarge
(RESOURCE_EXHAUSTED); everything else MemoryInputError (INVALID_ARGUMENT).
"""
from __future__ import annotations

import numpy as np

from atlasrl import codec
from atlasrl.memory.config import LimitsConfig
from atlasrl.memory.episode import Cell, Episode
from atlasrl.memory.errors import MemoryInputError, TooLarge
from atlasrl.v1 import memory_pb2

MAX_NAME = 256


def check_name(value: str, field: str, what: str = "request") -> str:
    if not value:
        raise MemoryInputError(f"{what}: {field} is required")
    if len(value) > MAX_NAME:
        raise MemoryInputError(f"{what}: {field} is longer than {MAX_NAME} characters")
    return value


def check_cell(cell, rows: int, cols: int, where: str) -> Cell:
    r, c = int(cell.row), int(cell.col)
    if not (0 <= r < rows and 0 <= c < cols):
        raise MemoryInputError(f"{where}: cell ({r},{c}) is outside the {rows}x{cols} grid")
    return r, c


def decode_frame(t, max_bytes: int, where: str) -> np.ndarray:
    try:
        nbytes = codec.expected_nbytes(t)
        if nbytes > max_bytes:
            raise TooLarge(f"{where}: frame of shape {list(t.shape)} ({nbytes} bytes) exceeds the decode limit of {max_bytes} bytes")
        frame = codec.decode(t, max_bytes=max_bytes)
    except codec.CodecError as e:
        raise MemoryInputError(f"{where}: malformed tensor: {e}") from None
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or min(frame.shape[:2]) < 1:
        raise MemoryInputError(f"{where}: expected an RGB uint8 (H, W, 3) frame, got {frame.dtype} {list(frame.shape)}")
    return frame


def episode_from_record(rec: memory_pb2.EpisodeRecord, limits: LimitsConfig, anchor_kinds=("goal", "target"),
                        tracked_kinds=("box", "object")) -> Episode:
    who = f"episode '{rec.episode_id}'" if rec.episode_id else "episode"
    if len(rec.episode_id) > MAX_NAME:
        raise MemoryInputError(f"{who}: episode_id is longer than {MAX_NAME} characters")
    family = check_name(rec.family, "family", who)
    layout_key = check_name(rec.layout_key, "layout_key", who)
    rows, cols = int(rec.grid_rows), int(rec.grid_cols)
    if rows < 1 or cols < 1:
        raise MemoryInputError(f"{who}: grid_rows and grid_cols must be >= 1 (got {rows}x{cols})")
    if max(rows, cols) > limits.max_grid_side:
        raise TooLarge(f"{who}: grid {rows}x{cols} exceeds max_grid_side {limits.max_grid_side}")
    if not rec.steps:
        raise MemoryInputError(f"{who}: steps is empty; at least the reset state s_0 is required")
    if len(rec.steps) > limits.max_steps:
        raise TooLarge(f"{who}: {len(rec.steps)} steps exceed the limit of {limits.max_steps}")
    if len(rec.key_frames) > limits.max_key_frames:
        raise TooLarge(f"{who}: {len(rec.key_frames)} key frames exceed the limit of {limits.max_key_frames}")
    if len(rec.entities) > limits.max_entities:
        raise TooLarge(f"{who}: {len(rec.entities)} entities exceed the limit of {limits.max_entities}")
    agent = np.empty((len(rec.steps), 2), np.int64)
    for t, step in enumerate(rec.steps):
        if not step.HasField("agent"):
            raise MemoryInputError(f"{who}: steps[{t}].agent is missing")
        agent[t] = check_cell(step.agent, rows, cols, f"{who} steps[{t}].agent")
        if len(step.entities) > limits.max_entities:
            raise TooLarge(f"{who}: steps[{t}] has {len(step.entities)} entities, limit {limits.max_entities}")
    statics = [(e.kind, check_cell(e.cell, rows, cols, f"{who} entities[{i}] ({e.kind})")) for i, e in enumerate(rec.entities)]
    goal = next((cell for kind in anchor_kinds for k, cell in statics if k == kind), None)
    final_entities = []
    last = rec.steps[-1]
    for i, e in enumerate(last.entities):
        cell = check_cell(e.cell, rows, cols, f"{who} steps[{len(rec.steps) - 1}].entities[{i}] ({e.kind})")
        if e.kind in tracked_kinds:
            final_entities.append((e.kind, cell))
    for t, step in enumerate(rec.steps[:-1]):
        for i, e in enumerate(step.entities):
            check_cell(e.cell, rows, cols, f"{who} steps[{t}].entities[{i}] ({e.kind})")
    frames = []
    for i, kf in enumerate(rec.key_frames):
        if kf.step >= len(rec.steps):
            raise MemoryInputError(f"{who}: key_frames[{i}].step {kf.step} is past the last step {len(rec.steps) - 1}")
        frames.append((int(kf.step), decode_frame(kf.image, limits.max_frame_bytes, f"{who} key_frames[{i}].image")))
    cause = rec.terminal_cause.strip().lower()
    if len(cause) > 64:
        raise MemoryInputError(f"{who}: terminal_cause is longer than 64 characters")
    if rec.success:
        if cause and cause != "success":
            raise MemoryInputError(f"{who}: success is true but terminal_cause is '{cause}'")
        cause = "success"
    elif not cause:
        cause = "timeout" if rec.truncated else "failure"
    elif cause == "success":
        raise MemoryInputError(f"{who}: terminal_cause is 'success' but success is false")
    return Episode(rec.episode_id, family, layout_key, rows, cols, agent, bool(rec.success), cause, goal,
                   statics, final_entities, frames)
