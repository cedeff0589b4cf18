"""A validated episode as the memory's domain logic sees it (no protobuf, no gRPC)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Cell = tuple[int, int]


@dataclass
class Episode:
    episode_id: str
    family: str
    layout_key: str
    rows: int
    cols: int
    agent: np.ndarray                      # (T + 1, 2) int64 cells of states s_0 .. s_T
    success: bool
    cause: str                             # "success", "hole", "deadlock", "timeout", ...
    goal: Cell | None = None               # anchor of the goal-relative family atlas
    statics: list[tuple[str, Cell]] = field(default_factory=list)       # goal, holes, targets
    final_entities: list[tuple[str, Cell]] = field(default_factory=list)  # tracked movable entities in s_T
    frames: list[tuple[int, np.ndarray]] = field(default_factory=list)    # (step, uint8 HxWx3)

    @property
    def length(self) -> int:
        """Transitions T (states minus one)."""
        return len(self.agent) - 1
