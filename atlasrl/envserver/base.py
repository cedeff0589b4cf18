"""What an atlasrl environment is: a Gymnasium env that also speaks text.

    env = registry.make("frozenlake", {"size": "8"}, seed=3)
    out = env.text_reset(seed=3)          # StepOutput: images, text, coords, ...
    out = env.text_step("Right, Down")    # parse + apply up to max_actions_per_turn actions
    env.spec_info()                       # EnvSpecInfo -> atlasrl.v1.EnvSpec on the wire

Envs know nothing of gRPC: the env server converts ``StepOutput`` and
``EnvSpecInfo`` to protobuf (atlasrl/envserver/convert.py). The Gymnasium
methods (``reset``/``step``/``render``, observation/action spaces) stay usable
on their own.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np


class EnvConfigError(ValueError):
    """A config key is unknown or its value is invalid; the message names the key."""


@dataclass
class Entity:
    kind: str                                  # "goal", "hole", "box", "target", "ee", "object", ...
    cell: tuple[int, int]                      # (row, col) on the grid / workspace grid
    position: tuple[float, ...] = ()           # world coordinates (ManiSkill), empty for grid games
    name: str = ""


@dataclass
class StepOutput:
    images: list[np.ndarray]                   # uint8 (H, W, 3); [0] is the primary camera
    text: str                                  # text rendering for the prompt
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    success: bool = False
    info: dict[str, Any] = field(default_factory=dict)  # JSON-able: action_is_valid, invalid_reason, terminal_cause, ...
    agent: tuple[int, int] | None = None
    entities: list[Entity] = field(default_factory=list)
    step: int = 0
    layout_key: str = ""
    # Optional, one per image: a key that names the image's content exactly (equal keys, equal pixels), so the
    # server encodes it once (a grid frame is a function of its renderer and tile codes: GridRenderer.key).
    image_keys: list[bytes] = field(default_factory=list)


@dataclass
class EnvSpecInfo:
    env_id: str
    family: str
    image_shape: tuple[int, int, int]
    valid_actions: list[str]
    max_steps: int
    grid_rows: int
    grid_cols: int
    max_actions_per_turn: int = 1
    action_kind: str = "discrete"              # "discrete" | "continuous"
    action_format: str = ""
    instruction: str = ""
    config: dict[str, str] = field(default_factory=dict)
    action_dim: int = 0
    camera_names: list[str] = field(default_factory=lambda: ["main"])
    numeric_actions: bool = False              # Action.values accepted: numeric_step (atlasrl/envserver/numeric.py)
    action_low: list[float] = field(default_factory=list)   # numeric bounds per dimension; empty = unbounded
    action_high: list[float] = field(default_factory=list)
    clip_actions: bool = False                 # out-of-range numeric actions are clipped (else refused)


class InvalidActionText(ValueError):
    """Action text that does not parse (raised by text_step only when strict=True)."""


class TextEnv(gym.Env, abc.ABC):
    """Base class of atlasrl environments."""

    @abc.abstractmethod
    def spec_info(self) -> EnvSpecInfo: ...

    @abc.abstractmethod
    def text_reset(self, seed: int | None = None) -> StepOutput: ...

    @abc.abstractmethod
    def text_step(self, text: str, strict: bool = False) -> StepOutput:
        """Apply an action text. Unparseable text: strict -> raise InvalidActionText;
        otherwise a penalised no-op turn with info["action_is_valid"] = False."""

    def numeric_step(self, actions: np.ndarray) -> StepOutput:
        """Apply (n, action_dim) float64 actions in order, already checked against the spec
        (atlasrl/envserver/numeric.py). Envs whose spec has numeric_actions override this."""
        raise InvalidActionText(f"{type(self).__name__} takes text actions only")
