"""A MiniWorld env (Farama's 3D navigation worlds) as an atlasrl TextEnv.

    env = registry.make("miniworld:Hallway", {"image_size": "64", "top_view": "true"}, seed=0)
    out = env.text_reset()                       # first-person frame (+ top-down map), text, cells
    out = env.text_step("turn left, move forward, move forward")

Positions: MiniWorld's floor plane is (x, z) in metres, y up. The workspace grid
bins the floor plan's bounding box (all rooms) into ``cell_size`` cells, rows
along z and columns along x, so row 0 is the top row of the top-down map (which
draws x to the right and z downwards). The grid is fixed when the env is built
(the first layout's extent); positions outside it are clamped. Heading is
MiniWorld's ``agent.dir`` in degrees: 0 faces +x ("east"), 90 faces -z ("north",
up in the top view).

Every call into miniworld runs on this process's OpenGL thread (gl.py).
"""
from __future__ import annotations

import hashlib
import math
from typing import Any

import gymnasium as gym
import numpy as np

from atlasrl.envserver.base import Entity, EnvSpecInfo, InvalidActionText, StepOutput, TextEnv
from atlasrl.envserver.miniworld import actions, gl
from atlasrl.envserver.miniworld.config import MiniWorldConfig
from atlasrl.envserver.miniworld.tasks import failure_cause, gym_id, instruction

OPEN_ENDED_MAX_STEPS = 1000
"""Episode length of envs without a limit of their own, when max_steps is not set."""
INVALID_OUTCOME = "Your reply was not a valid action."
EPISODE_OVER = "the episode is over; reset the env"
COMPASS = ("east", "north-east", "north", "north-west", "west", "south-west", "south", "south-east")
_PAST = {0: "You turned left.", 1: "You turned right.", 2: "You moved forward.", 3: "You moved back.",
         4: "You tried to pick up.", 5: "You dropped.", 6: "You toggled.", 7: "You said done."}


def compass(heading_deg: float) -> str:
    return COMPASS[int(((heading_deg % 360) + 22.5) // 45) % 8]


class WorkspaceGrid:
    """Floor (x, z) in metres <-> (row, col) cells of side ``cell`` over [x0, x1] x [z0, z1]."""

    def __init__(self, x0: float, x1: float, z0: float, z1: float, cell: float):
        self.x0, self.x1, self.z0, self.z1, self.cell = float(x0), float(x1), float(z0), float(z1), cell
        self.rows = max(1, math.ceil((self.z1 - self.z0) / cell - 1e-9))
        self.cols = max(1, math.ceil((self.x1 - self.x0) / cell - 1e-9))

    def cell_of(self, x: float, z: float) -> tuple[int, int]:
        r = int(np.clip(math.floor((z - self.z0) / self.cell), 0, self.rows - 1))
        c = int(np.clip(math.floor((x - self.x0) / self.cell), 0, self.cols - 1))
        return r, c


class MiniWorldTextEnv(TextEnv):
    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012 - gymnasium.Env.metadata, a class attribute by its convention

    def __init__(self, name: str, config: MiniWorldConfig | None = None, seed: int | None = None):
        self.name, self.config = name, config or MiniWorldConfig()
        self.env_id = f"miniworld:{name}"
        self._gym_id = gym_id(name)
        self.render_mode = "rgb_array"
        size = self.config.image_size
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        self._env: Any = None
        gl.call(self._create)
        self._next_seed = seed
        self._last: StepOutput | None = None
        self.steps = 0

    # -- construction (OpenGL thread) -----------------------------------------------------------
    def _create(self) -> None:
        mw = gl.load()
        cfg = self.config
        try:  # the class itself, not gym.make: no wrappers, and no dependence on gymnasium's global registry
            # window_*: MiniWorld's human-view frame buffer (800x600, multisampled: ~30 MB per env) is never drawn
            self._env = getattr(mw.envs, self.name)(obs_width=cfg.image_size, obs_height=cfg.image_size,
                                                    domain_rand=cfg.domain_rand, window_width=16, window_height=16)
        except Exception as e:  # a GL context or frame buffer that cannot be made: not the caller's config
            raise gl.MiniWorldUnavailable(f"MiniWorld env '{self._gym_id}' could not be created: {type(e).__name__}: {e}. "
                                          f"{gl.FIX}") from e
        u = self._env
        self.n_actions = int(u.action_space.n)
        self.action_space = gym.spaces.Discrete(self.n_actions)
        native = u.max_episode_steps     # math.inf in RoomObjects, which never ends on its own
        self.max_steps = cfg.max_steps or (int(native) if math.isfinite(native) else OPEN_ENDED_MAX_STEPS)
        u.max_episode_steps = self.max_steps
        if cfg.forward_step or cfg.turn_step:
            params = u.params.copy()
            for key, value in (("forward_step", cfg.forward_step), ("turn_step", cfg.turn_step)):
                if value:
                    params.set(key, float(value))    # one value: no randomisation of it even with domain_rand
            u.params = params
        self.grid = WorkspaceGrid(u.min_x, u.max_x, u.min_z, u.max_z, cfg.cell_size)
        self._top_fbs: dict[int, Any] = {}      # side in px -> FrameBuffer of the top-down view

    # -- TextEnv ------------------------------------------------------------------------------
    def spec_info(self) -> EnvSpecInfo:
        size = self.config.image_size
        words = list(actions.WORDS[:self.n_actions])
        k = self.config.max_actions_per_turn
        return EnvSpecInfo(
            env_id=self.env_id, family=self.env_id, image_shape=(size, size, 3), valid_actions=words,
            max_steps=self.max_steps, grid_rows=self.grid.rows, grid_cols=self.grid.cols,
            max_actions_per_turn=k, action_kind="discrete",
            action_format=(f"1 to {k} of: {', '.join(words)}; separated by commas, executed in order, "
                           f"e.g. \"turn left, move forward\""),
            instruction=instruction(self.name), config=self.config.as_strings(),
            camera_names=["first_person", "top_down"] if self.config.top_view else ["first_person"],
        )

    def text_reset(self, seed: int | None = None) -> StepOutput:
        seed = seed if seed is not None else self._next_seed
        self._next_seed = None
        if seed is not None:
            seed %= 2**63                         # the wire's int64 seeds: map negatives, don't fail
        return gl.call(self._reset, seed)

    def text_step(self, text: str, strict: bool = False) -> StepOutput:
        try:
            ids = actions.parse(text, self.n_actions, self.config.max_actions_per_turn)
        except actions.ActionParseError as e:
            if strict:
                raise InvalidActionText(str(e)) from None
            return gl.call(self._turn, [], str(e))
        return gl.call(self._turn, ids, None)

    # -- Gymnasium ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        out = self.text_reset(seed)
        return out.images[0], out.info

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        out = gl.call(self._turn, [int(action)], None)
        return out.images[0], out.reward, out.terminated, out.truncated, out.info

    def render(self):
        return None if self._last is None else self._last.images[0]

    def close(self) -> None:
        if self._env is not None:
            gl.call(self._close)

    def top_view(self, size: int | None = None, agent: bool = True) -> np.ndarray:
        """The top-down map at ``size`` px (default top_view_size), with or without the agent (atlas backgrounds)."""
        return gl.call(self._top_view, size or self.config.top_view_size, agent)

    def top_view_extent(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, z_min, z_max) shown by a square top view: MiniWorld pads the floor plan by 1 m
        and widens the shorter side to the image's aspect (render_top_view)."""
        u = self._env
        x0, x1, z0, z1 = u.min_x - 1, u.max_x + 1, u.min_z - 1, u.max_z + 1
        w, h = x1 - x0, z1 - z0
        if w > h:
            z0, z1 = z0 - (w - h) / 2, z1 + (w - h) / 2
        else:
            x0, x1 = x0 - (h - w) / 2, x1 + (h - w) / 2
        return float(x0), float(x1), float(z0), float(z1)

    def grid_box(self, size: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) pixels of the workspace grid in a ``size`` px top view: where atlases of this
        env's cells are drawn over the map."""
        x0, x1, z0, z1 = self.top_view_extent()
        g = self.grid

        def px(v: float, lo: float, hi: float) -> int:
            return round((v - lo) / (hi - lo) * size)
        return (px(g.z0, z0, z1), px(g.z0 + g.rows * g.cell, z0, z1), px(g.x0, x0, x1), px(g.x0 + g.cols * g.cell, x0, x1))

    # -- internals (OpenGL thread) ------------------------------------------------------------
    def _close(self) -> None:
        u, self._env = self._env, None
        u.close()
        u.shadow_window.close()                 # MiniWorld's close leaves its (pbuffer) context open

    def _top_view(self, size: int, agent: bool = True) -> np.ndarray:
        fb = self._top_fbs.get(size)
        if fb is None:
            from miniworld.opengl import FrameBuffer

            fb = self._top_fbs[size] = FrameBuffer(size, size, 4)
        return np.ascontiguousarray(self._env.render_top_view(fb, render_agent=agent), dtype=np.uint8)

    def _reset(self, seed: int | None) -> StepOutput:
        u = self._env
        obs, _ = u.reset(seed=seed)
        self.steps = 0
        self._collisions = 0
        self._stall = 0
        self._cause: str | None = None
        self._layout_key = self._layout()
        self._grid_box = self.grid_box(self.config.top_view_size)   # the floor plan may differ per layout
        self._last = self._output(obs, 0.0, "", {"action_is_valid": True})
        return self._last

    def _turn(self, ids: list[int], invalid: str | None) -> StepOutput:
        last = self._last
        if last is None:
            raise RuntimeError("step before reset")
        if self._cause is not None:              # same rule as the grid games: a finished episode does not move
            info = {**last.info, "action_is_valid": False, "invalid_reason": EPISODE_OVER, "actions_executed": 0}
            self._last = StepOutput(**{**last.__dict__, "reward": 0.0, "info": info})
            return self._last
        u = self._env
        cfg = self.config
        if invalid is not None:                  # a penalised no-op turn that still counts one step
            self.steps += 1
            u.step_count += 1
            self._count_stall()
            if self._cause is None and self.steps >= self.max_steps:
                self._cause = "timeout"
            obs = self._last_obs
            extra = {"action_is_valid": False, "invalid_reason": invalid, "actions_executed": 0}
            self._last = self._output(obs, cfg.step_penalty + cfg.invalid_penalty, INVALID_OUTCOME, extra)
            return self._last
        reward, events, done_ids = 0.0, [], []
        obs = self._last_obs
        for a in ids:
            before = np.array(u.agent.pos, copy=True)
            carrying = u.agent.carrying
            obs, r, term, trunc, _ = u.step(a)
            self.steps += 1
            done_ids.append(actions.WORDS[a])
            events.append(self._event(a, before, carrying))
            success = bool(term) and r > 0 and self.name not in _DENSE
            reward += (cfg.success_reward if success else float(r)) + cfg.step_penalty
            self._count_stall()
            if success:
                self._cause = "success"
                events.append("You reached the goal.")
            elif term:
                self._cause = failure_cause(self.name)
            elif cfg.max_collisions and self._collisions >= cfg.max_collisions:
                self._cause = "collisions"
            elif cfg.stall_steps and self._stall >= cfg.stall_steps:
                self._cause = "stalled"
            elif trunc or self.steps >= self.max_steps:
                self._cause = "timeout"
            if self._cause is not None:
                break
        extra = {"action_is_valid": True, "actions_executed": len(done_ids), "actions": done_ids}
        self._last = self._output(obs, reward, _squash(events), extra)
        return self._last

    def _event(self, a: int, before: np.ndarray, carrying) -> str:
        u = self._env
        if a in (2, 3) and np.allclose(before, u.agent.pos):
            self._collisions += 1
            return "You bumped into a wall."
        if a == 4:
            return "You picked something up." if u.agent.carrying is not None and carrying is None else "There was nothing to pick up."
        return _PAST[a]

    def _count_stall(self) -> None:
        cell = self.grid.cell_of(self._env.agent.pos[0], self._env.agent.pos[2])
        self._stall = self._stall + 1 if cell == getattr(self, "_stall_cell", None) else 1
        self._stall_cell = cell

    def _layout(self) -> str:
        """Hash of what was generated: rooms (floor polygons) and where the entities are; not the agent."""
        u = self._env
        parts = [self._gym_id]
        parts += [",".join(f"{v:.2f}" for v in np.asarray(r.outline).ravel()) for r in u.rooms]
        parts += [f"{type(e).__name__}:{e.pos[0]:.2f},{e.pos[2]:.2f}" for e in u.entities if e is not u.agent]
        return hashlib.sha1("|".join(parts).encode()).hexdigest()[:12]

    def _entities(self) -> list[Entity]:
        u = self._env
        goal = getattr(u, "box", None)
        out = []
        for e in u.entities:
            if e is u.agent or (e.is_static and e is not goal):
                continue
            kind = "goal" if e is goal else "object"
            out.append(Entity(kind, self.grid.cell_of(e.pos[0], e.pos[2]), (float(e.pos[0]), float(e.pos[2])),
                              f"{getattr(e, 'color', '') or ''} {type(e).__name__.lower()}".strip()))
        return out

    def _output(self, obs: np.ndarray, reward: float, outcome: str, extra: dict[str, Any]) -> StepOutput:
        u = self._env
        self._last_obs = obs
        x, z = float(u.agent.pos[0]), float(u.agent.pos[2])
        heading = math.degrees(u.agent.dir) % 360
        cell = self.grid.cell_of(x, z)
        images = [np.ascontiguousarray(obs, dtype=np.uint8)]
        if self.config.top_view:
            images.append(self._top_view(self.config.top_view_size))
            extra = {**extra, "top_view_grid_box": list(self._grid_box)}
        entities = self._entities()
        cause = self._cause
        info: dict[str, Any] = {"step": self.steps, "success": cause == "success", "position": [round(x, 4), round(z, 4)],
                                "heading_deg": round(heading, 2), "collisions": self._collisions, **extra}
        if cause is not None:
            info["terminal_cause"] = cause
        lines = [f"Task: {instruction(self.name)}"]
        if outcome:
            lines.append(outcome)
        if self.config.text_mode == "pose":
            lines.append(f"You are in cell {cell}, facing {compass(heading)}.")
            lines += [f"The {e.name} is in cell {e.cell}." for e in entities if e.kind == "goal"]
        return StepOutput(
            images=images, text="\n".join(lines), reward=float(reward), terminated=cause not in (None, "timeout"),
            truncated=cause == "timeout", success=cause == "success", info=info, agent=cell, entities=entities,
            step=self.steps, layout_key=self._layout_key,
        )


# Envs whose positive rewards are not the end of the task (every pickup pays; health pays per step alive).
_DENSE = frozenset({"CollectHealth"})


def _squash(events: list[str]) -> str:
    """"You moved forward. You moved forward." -> "You moved forward (2x).": short outcome lines."""
    out: list[tuple[str, int]] = []
    for e in events:
        if out and out[-1][0] == e:
            out[-1] = (e, out[-1][1] + 1)
        else:
            out.append((e, 1))
    return " ".join(e if n == 1 else f"{e[:-1]} ({n}x)." for e, n in out)
