"""Reach: a rendered 2D point mass that must reach a target shown in the image (numeric actions).

    env = ReachEnv.from_config({"image_size": "64", "chunk": "8"}, seed=0)
    out = env.text_reset(seed=3)                       # frame: blue agent dot, red target disk
    out = env.numeric_step(np.array([[0.5, -1.0]] * 8))  # (n <= chunk, 2) velocities in [-1, 1]
    out = env.text_step("0.5 -1, 0.5 -1")              # the same as text: "dx dy" pairs, comma separated

The arena is [-1, 1]^2; each action moves the agent by ``step_size * clip(a, -1, 1)``. One decision is a
chunk of up to ``chunk`` actions (an action-head policy's H x 2 output), applied in order until the target
is reached. Reward: progress (distance before minus after, so a straight reach earns about the start
distance) plus ``success_reward`` when the agent's centre is within ``radius`` of the target. The state is
in the pixels only: the text says the task, not the positions.
"""
from __future__ import annotations

import re
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from atlasrl.envserver.base import Entity, EnvSpecInfo, InvalidActionText, StepOutput, TextEnv
from atlasrl.envserver.envs.config import parse_config

INSTRUCTION = "Move the blue dot onto the red target."
GRID = 8  # workspace cells for Observation.agent / Entity.cell (memory keys, debug views)


class ReachConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    image_size: int = Field(64, ge=16, le=512)
    """Side of the rendered frame in pixels."""
    chunk: int = Field(8, ge=1, le=64)
    """Actions per decision at most (spec.max_actions_per_turn): the action head's horizon H."""
    max_turns: int = Field(4, ge=1, le=1000)
    """Decisions before the episode is truncated (max_steps = chunk * max_turns primitive actions)."""
    step_size: float = Field(0.1, gt=0, le=1)
    """Arena units moved per action of magnitude 1 (the arena is 2 wide)."""
    radius: float = Field(0.15, gt=0, le=1)
    """Success when the agent is this close to the target."""
    start: Literal["random", "center"] = "random"
    """Where the agent starts: anywhere, or at the centre (then only the target moves between episodes)."""
    min_distance: float = Field(0.5, ge=0, le=2)
    """Targets are drawn at least this far from the start."""
    clip: bool = True
    """Out-of-range numeric actions are clipped to [-1, 1] (spec.clip_actions); false refuses them."""
    success_reward: float = Field(1.0, ge=-1e6, le=1e6)
    """Reward added by the action that reaches the target."""


class ReachEnv(TextEnv):
    @classmethod
    def from_config(cls, config: dict[str, str], seed: int | None = None, env_id: str = "reach") -> ReachEnv:
        # parse_config's type bound is the grid games' base; it only needs a pydantic model (the same checks apply)
        return cls(parse_config(ReachConfig, config), seed, env_id)  # type: ignore[type-var]

    def __init__(self, config: ReachConfig, seed: int | None = None, env_id: str = "reach"):
        self.config, self.env_id = config, env_id
        self.rng = np.random.default_rng(seed)
        self.agent = np.zeros(2)
        self.target = np.zeros(2)
        self.steps = 0
        self.done = False
        s = config.image_size
        ys, xs = np.mgrid[0:s, 0:s]
        self._pix = np.stack([(xs + 0.5) / s * 2 - 1, (ys + 0.5) / s * 2 - 1], -1)   # pixel centres in arena units

    def spec_info(self) -> EnvSpecInfo:
        c = self.config
        return EnvSpecInfo(
            env_id=self.env_id, family="reach", image_shape=(c.image_size, c.image_size, 3), valid_actions=[],
            max_steps=c.chunk * c.max_turns, grid_rows=GRID, grid_cols=GRID, max_actions_per_turn=c.chunk,
            action_kind="continuous", action_dim=2, instruction=INSTRUCTION,
            action_format="numeric (n, 2) velocities in [-1, 1], or text 'dx dy' pairs separated by commas",
            config={k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in c.model_dump().items()},
            numeric_actions=True, action_low=[-1.0, -1.0], action_high=[1.0, 1.0], clip_actions=c.clip,
        )

    # --- episodes ---------------------------------------------------------------------
    def text_reset(self, seed: int | None = None) -> StepOutput:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agent = self.rng.uniform(-0.8, 0.8, 2) if self.config.start == "random" else np.zeros(2)
        while True:
            self.target = self.rng.uniform(-0.8, 0.8, 2)
            if np.linalg.norm(self.target - self.agent) >= self.config.min_distance:
                break
        self.steps, self.done = 0, False
        return self._output(0.0, False, {"action_is_valid": True})

    def numeric_step(self, actions: np.ndarray) -> StepOutput:
        c = self.config
        reward, success = 0.0, False
        for a in np.asarray(actions, dtype=np.float64).reshape(-1, 2):
            before = float(np.linalg.norm(self.target - self.agent))
            self.agent = np.clip(self.agent + c.step_size * np.clip(a, -1, 1), -1, 1)
            self.steps += 1
            after = float(np.linalg.norm(self.target - self.agent))
            reward += before - after
            if after <= c.radius:
                success = True
                reward += c.success_reward
                break
            if self.steps >= c.chunk * c.max_turns:
                break
        return self._output(reward, success, {"action_is_valid": True})

    def text_step(self, text: str, strict: bool = False) -> StepOutput:
        try:
            actions = parse_pairs(text, self.config.chunk)
        except ValueError as e:
            if strict:
                raise InvalidActionText(str(e)) from None
            self.steps += 1
            return self._output(0.0, False, {"action_is_valid": False, "invalid_reason": str(e)})
        return self.numeric_step(actions)

    # --- rendering --------------------------------------------------------------------
    def _output(self, reward: float, success: bool, info: dict) -> StepOutput:
        truncated = not success and self.steps >= self.config.chunk * self.config.max_turns
        self.done = success or truncated
        if self.done:
            info["terminal_cause"] = "success" if success else "timeout"
        return StepOutput(
            images=[self.render()], text=INSTRUCTION, reward=float(reward), terminated=success, truncated=truncated,
            success=success, info=info, agent=_cell(self.agent), step=self.steps,
            entities=[Entity("target", _cell(self.target), (float(self.target[0]), float(self.target[1])))],
            layout_key=f"reach:{self.target[0]:.2f},{self.target[1]:.2f}",
        )

    def render(self) -> np.ndarray:  # type: ignore[override]  # gymnasium's render returns RenderFrame | None
        s = self.config.image_size
        img = np.full((s, s, 3), 30, dtype=np.uint8)
        dot = max(self.config.radius, 4 / s)
        img[np.linalg.norm(self._pix - self.target, axis=-1) <= self.config.radius] = (220, 40, 40)
        img[np.linalg.norm(self._pix - self.agent, axis=-1) <= dot * 0.6] = (60, 120, 255)
        return img


def parse_pairs(text: str, limit: int) -> np.ndarray:
    """"dx dy, dx dy, ..." -> (n, 2); ValueError naming the problem."""
    groups = [g for g in re.split(r"[;,\n]", text) if g.strip()]
    if not groups:
        raise ValueError("no action: expected 'dx dy' pairs separated by commas")
    if len(groups) > limit:
        raise ValueError(f"{len(groups)} actions; at most {limit} per turn")
    out = []
    for g in groups:
        parts = g.split()
        try:
            pair = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"'{g.strip()}' is not two numbers") from None
        if len(pair) != 2 or not np.isfinite(pair).all():
            raise ValueError(f"'{g.strip()}' is not two finite numbers")
        out.append(pair)
    return np.asarray(out)


def _cell(p: np.ndarray) -> tuple[int, int]:
    return (int(np.clip((p[1] + 1) / 2 * GRID, 0, GRID - 1)), int(np.clip((p[0] + 1) / 2 * GRID, 0, GRID - 1)))
