"""Shared turn logic of the grid games (FrozenLake, Sokoban).

A game subclass supplies the level (``_new_level``), the move rule
(``_apply``) and its views (tile codes, characters, entities); this class does
the rest the same way for every game: action-text parsing, K actions per turn,
step penalties, invalid turns, truncation, terminal causes, ``StepOutput`` and
the Gymnasium API.

Observation space: the RGB frame, ``Box(0, 255, (image_size, image_size, 3), uint8)``: the whole map, or with
``view=egocentric`` a window of it centred on the agent (cells beyond the edge drawn as void).
Action space: ``Discrete(4)`` in the order of ``grid_actions.ACTIONS`` (Up, Down, Left, Right).

Text: ``text_mode`` picks the view ("grid", "relative", or "none": only the
game's one-line ``task``, the state being in the frame alone). With
``outcome_text`` the text starts with what the last turn's actions did, from
the events the game reports while applying them (``_event("You moved down.")``).
"""
from __future__ import annotations

import abc
import hashlib
from typing import Any

import numpy as np
from gymnasium import spaces

from atlasrl.envserver.base import Entity, EnvSpecInfo, InvalidActionText, StepOutput, TextEnv
from atlasrl.envserver.envs.config import GridConfig
from atlasrl.envserver.envs.grid_actions import ACTIONS, DELTAS, ActionParseError, parse_actions
from atlasrl.envserver.envs.render import GridRenderer, Painter, void

FAILURE_CAUSES = frozenset({"hole", "deadlock"})
EPISODE_OVER = "the episode is over; reset the env"
INVALID_OUTCOME = "Your reply was not a valid action."
OVER_OUTCOME = "The episode is over."


class GridTextEnv(TextEnv, abc.ABC):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}  # noqa: RUF012 - gymnasium.Env.metadata, a class attribute by its convention

    family: str = ""
    sprites: tuple[Painter, ...] = ()
    legend: str = ""
    task: str = ""
    """The text of text_mode=none: the goal in one short line (the instruction, without the map's characters)."""

    def __init__(self, config: GridConfig, seed: int | None = None, env_id: str = ""):
        self.config = config
        self.env_id = env_id or self.family
        self.render_mode = "rgb_array"
        self.rows = self.cols = config.size
        self.max_steps = config.resolved_max_steps()
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.observation_space = spaces.Box(0, 255, (config.image_size, config.image_size, 3), np.uint8)
        # Egocentric views draw a window of the tile codes padded with one more code, the void beyond the edge.
        cells = config.view_cells()
        self._void_code = len(self.sprites)
        self._renderer = GridRenderer((*self.sprites, void), cells, cells, config.image_size,
                                      position_marks=config.position_marks)
        self._events: list[str] = []
        self._outcome = ""
        self.terminal_cause: str | None = None
        self.reset(seed=seed)
        self._untouched_first_level = True

    # --- what a game supplies ---------------------------------------------------------------

    @property
    @abc.abstractmethod
    def instruction(self) -> str: ...

    @abc.abstractmethod
    def _new_level(self, rng: np.random.Generator) -> None:
        """Draw a new level from rng and place the agent."""

    @abc.abstractmethod
    def _apply(self, action: int) -> tuple[float, str | None]:
        """Apply one primitive action: (reward without step penalty, terminal cause or None)."""

    @abc.abstractmethod
    def tile_codes(self) -> np.ndarray:
        """(rows, cols) sprite indices of the current state."""

    @abc.abstractmethod
    def _grid_rows(self) -> list[str]:
        """The current state as one string of legend characters per row."""

    @abc.abstractmethod
    def _relative_text(self) -> str:
        """Compact view for tiny models: the four neighbours and where the goals are."""

    @abc.abstractmethod
    def agent_cell(self) -> tuple[int, int]: ...

    @abc.abstractmethod
    def entities(self) -> list[Entity]: ...

    @abc.abstractmethod
    def _level_string(self) -> str:
        """The level as generated (before any move): the source of layout_key."""

    def _game_info(self) -> dict[str, Any]:
        return {}

    def _begin_turn(self) -> None:
        pass

    # --- Gymnasium API ----------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None and seed < 0:          # the wire's int64 seeds: map negatives, don't fail
            seed %= 2**64
        super().reset(seed=seed)
        self._untouched_first_level = False
        self.level_seed = seed          # the seed this level was drawn with (None: continued the generator)
        self._new_level(self.np_random)
        self._start_episode()
        return self.render(), self._info()

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        reward, info = self._turn([int(action)])
        return self.render(), reward, self.terminated, self.truncated, info

    def render(self) -> np.ndarray:
        return self._renderer.frame(self._view_codes())

    def _view_codes(self) -> np.ndarray:
        codes = self.tile_codes()
        return self._egocentric(codes) if self.config.view == "egocentric" else codes

    def _egocentric(self, codes: np.ndarray) -> np.ndarray:
        """The (2r+1, 2r+1) window of ``codes`` centred on the agent; cells off the map get the void code."""
        r = self.config.view_cells() // 2
        padded = np.full((self.rows + 2 * r, self.cols + 2 * r), self._void_code, codes.dtype)
        padded[r:r + self.rows, r:r + self.cols] = codes
        row, col = self.agent_cell()
        return padded[row:row + 2 * r + 1, col:col + 2 * r + 1]

    # --- text API ---------------------------------------------------------------------------

    def spec_info(self) -> EnvSpecInfo:
        k = self.config.max_actions_per_turn
        return EnvSpecInfo(
            env_id=self.env_id, family=self.family, image_shape=self.observation_space.shape,  # type: ignore[arg-type]  # a Box image: (H, W, 3), typed tuple[int, ...] | None by gymnasium
            valid_actions=list(ACTIONS), max_steps=self.max_steps, grid_rows=self.rows,
            grid_cols=self.cols, max_actions_per_turn=k, action_kind="discrete",
            action_format=(f"1 to {k} of {', '.join(ACTIONS)} separated by commas or spaces, "
                           f"executed in order, e.g. \"Left, Up\""),
            instruction=self.instruction, config=self.config.as_strings())

    def text_reset(self, seed: int | None = None) -> StepOutput:
        """New level; without a seed, the first call after construction keeps the level the
        construction seed drew (so open(seed=s) + reset() plays the same level as reset(seed=s))."""
        if seed is None and self._untouched_first_level:
            self._untouched_first_level = False
            return self._output(0.0, self._info())
        _, info = self.reset(seed=seed)
        return self._output(0.0, info)

    def text_step(self, text: str, strict: bool = False) -> StepOutput:
        try:
            actions = parse_actions(text, self.config.max_actions_per_turn)
        except ActionParseError as exc:
            if strict:
                raise InvalidActionText(str(exc)) from None
            reward, info = self._invalid_turn(str(exc))
        else:
            reward, info = self._turn(actions)
        return self._output(reward, info)

    def text(self) -> str:
        if self.config.text_mode == "relative":
            body = self._relative_text()
        elif self.config.text_mode == "none":
            body = self.task
        else:
            body = "\n".join(self._grid_rows()) + "\n" + self.legend
        if self.config.outcome_text and self._outcome:
            return self._outcome + "\n" + body
        return body

    @property
    def terminated(self) -> bool:
        return self.terminal_cause is not None and self.terminal_cause != "timeout"

    @property
    def truncated(self) -> bool:
        return self.terminal_cause == "timeout"

    @property
    def success(self) -> bool:
        return self.terminal_cause == "success"

    # --- turn logic -------------------------------------------------------------------------

    def _turn(self, actions: list[int]) -> tuple[float, dict[str, Any]]:
        self._untouched_first_level = False
        if self.terminal_cause is not None:
            self._outcome = OVER_OUTCOME
            return 0.0, self._info(action_is_valid=False, invalid_reason=EPISODE_OVER, actions_executed=0)
        self._begin_turn()
        self._events = []
        reward, executed = 0.0, []
        for action in actions:
            gained, cause = self._apply(action)
            reward += gained + self.config.step_penalty
            executed.append(ACTIONS[action])
            self._count_step(cause)
            if self.terminal_cause is not None:
                break
        self._outcome = " ".join(self._events)
        return reward, self._info(action_is_valid=True, actions_executed=len(executed), actions=executed)

    def _invalid_turn(self, reason: str) -> tuple[float, dict[str, Any]]:
        self._untouched_first_level = False
        if self.terminal_cause is not None:
            self._outcome = OVER_OUTCOME
            return 0.0, self._info(action_is_valid=False, invalid_reason=EPISODE_OVER, actions_executed=0)
        self._outcome = INVALID_OUTCOME
        self._count_step(None)
        reward = self.config.step_penalty + self.config.invalid_penalty
        return reward, self._info(action_is_valid=False, invalid_reason=reason, actions_executed=0)

    def _count_step(self, cause: str | None) -> None:
        self.steps += 1
        if cause is None and self.steps >= self.max_steps:
            cause = "timeout"
        self.terminal_cause = cause

    def _info(self, **turn: Any) -> dict[str, Any]:
        info: dict[str, Any] = {"step": self.steps, "success": self.success, **self._game_info(), **turn}
        if self.terminal_cause is not None:
            info["terminal_cause"] = self.terminal_cause
        return info

    def _output(self, reward: float, info: dict[str, Any]) -> StepOutput:
        images, keys = [], []
        if self.config.render:
            codes = self._view_codes()
            images, keys = [self._renderer.frame(codes)], [self._renderer.key(codes)]
        return StepOutput(
            images=images, image_keys=keys, text=self.text(), reward=float(reward), terminated=self.terminated,
            truncated=self.truncated, success=self.success, info=info, agent=self.agent_cell(),
            entities=self.entities(), step=self.steps, layout_key=self.layout_key)

    # --- helpers for the games --------------------------------------------------------------

    def _start_episode(self) -> None:
        """The level just placed starts a new episode: step count, terminal cause and outcome cleared."""
        self.layout_key = self._layout_key()
        self.steps = 0
        self.terminal_cause = None
        self._outcome = ""

    def _event(self, sentence: str) -> None:
        """What one primitive action did, for outcome_text ("You moved down.")."""
        self._events.append(sentence)

    def _layout_key(self) -> str:
        return hashlib.sha1(self._level_string().encode()).hexdigest()[:12]

    def _inside(self, row: int, col: int) -> bool:
        return 0 <= row < self.rows and 0 <= col < self.cols

    def _neighbour_lines(self, describe) -> list[str]:
        """"Up: hole" style lines; describe(row, col) names an in-grid cell."""
        row, col = self.agent_cell()
        lines = []
        for name, (dr, dc) in zip(ACTIONS, DELTAS):
            r, c = row + dr, col + dc
            lines.append(f"{name}: {describe(r, c) if self._inside(r, c) else 'edge'}")
        return lines


def offset_phrase(origin: tuple[int, int], cell: tuple[int, int]) -> str:
    """Where cell lies from origin: "2 down, 3 right", "1 up", "here"."""
    dr, dc = cell[0] - origin[0], cell[1] - origin[1]
    parts = []
    if dr:
        parts.append(f"{abs(dr)} {'down' if dr > 0 else 'up'}")
    if dc:
        parts.append(f"{abs(dc)} {'right' if dc > 0 else 'left'}")
    return ", ".join(parts) or "here"
