"""The memory's view of the current state, rebuilt every turn from the group's frozen atlas (no RPC per turn).

    view = TurnView(danger, affinity, skills=[...], exemplars=[(frame, caption)], risk=True, overlay=True)
    text = view.annotate(obs)        # "Down: ice" -> "Down: ice (risk high)" for each neighbour line
    hints = view.hints(obs)          # skills, the overlay around the agent's current cell, exemplar frames

Envs in continuous space (MiniWorld) send a top-down map as a second image with ``info.top_view_grid_box``:
the overlay is drawn on that map, and risk hints name the agent's cell and the cell ahead of its heading.
Grid envs with an egocentric view (``view=egocentric``, the frozenlake-vl preset) send the agent's window of the
map: the overlay is then the same window of the maps, centred on the agent, cells beyond the edge untinted.

One Query per GRPO group (MemoryAdvisor.episode_start) returns the maps; every member of the group then reads
the same frozen maps on every turn, as its shaping does, so the prompts of a group differ only by what the
members did. The channels are switches of ``ActorConfig``: ``memory_hints`` (text skills and/or the overlay),
``memory_risk`` (risk words) and ``memory_exemplars`` (k remembered frames).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from atlasrl import codec
from atlasrl.actors.prompts import MemoryHints
from atlasrl.atlas_image import overlay as render_overlay
from atlasrl.atlas_image import overlay_box, overlay_layers
from atlasrl.v1 import env_pb2, tensor_pb2

DIRECTIONS = {"Up": (-1, 0), "Down": (1, 0), "Left": (0, -1), "Right": (0, 1)}
RISK_HIGH = 0.5
RISK_SOME = 0.15
"""Danger-map thresholds of the risk words: high >= 0.5, some >= 0.15, else low (the map is in [0, 1])."""


def egocentric_radius(spec: env_pb2.EnvSpec) -> int | None:
    """The window radius of a grid env whose frame is the agent's egocentric window (``view=egocentric``), else None."""
    if spec.config.get("view") != "egocentric":
        return None
    radius = spec.config.get("view_radius", "None")
    return int(radius) if radius not in ("", "None") else max(spec.grid_rows, spec.grid_cols) - 1


def window_of(grid: np.ndarray, cell: tuple[int, int], radius: int) -> np.ndarray:
    """The (2r+1, 2r+1) window of ``grid`` centred on ``cell``, zeros beyond its edge (as the env's own window)."""
    out = np.zeros((2 * radius + 1, 2 * radius + 1), grid.dtype)
    rows, cols = grid.shape
    r0, c0 = cell[0] - radius, cell[1] - radius
    top, left = max(r0, 0), max(c0, 0)
    bottom, right = min(cell[0] + radius + 1, rows), min(cell[1] + radius + 1, cols)
    if top < bottom and left < right:
        out[top - r0:bottom - r0, left - c0:right - c0] = grid[top:bottom, left:right]
    return out


def risk_word(danger: float) -> str:
    return "high" if danger >= RISK_HIGH else "some" if danger >= RISK_SOME else "low"


@dataclass
class TurnView:
    """A group's frozen memory maps and what each turn's prompt shows of them."""

    danger: np.ndarray
    affinity: np.ndarray
    skills: list[str] = field(default_factory=list)
    exemplars: list[tuple[np.ndarray, str]] = field(default_factory=list)
    risk: bool = False
    overlay: bool = False
    blend: bool = False         # ActorConfig.memory_overlay == "blend": the overlay stands in for the frame
    window: int | None = None   # the frame is the egocentric window of this radius around the agent (egocentric_radius)
    _layers: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    _exemplar_tensors: list[tuple[tensor_pb2.Tensor, str]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        # Prompt images are wire tensors, like the env's frames: the engine decodes them and the episode keeps them
        # for the learner. Exemplars are encoded once per group here, the overlay once per turn in hints().
        self._exemplar_tensors = [(codec.encode(frame, "memory_exemplar"), caption) for frame, caption in self.exemplars]

    def annotate(self, obs: env_pb2.Observation) -> str:
        """The observation text with the risk word of each neighbour cell appended to its line ("Up: ice" ->
        "Up: ice (risk low)"); lines of off-grid cells ("edge") and texts without neighbour lines are kept."""
        text = obs.text
        if not self.risk or not obs.HasField("agent"):
            return text
        rows, cols = self.danger.shape
        out = []
        for line in text.split("\n"):
            name, sep, rest = line.partition(": ")
            delta = DIRECTIONS.get(name)
            if sep and delta is not None and rest != "edge":
                r, c = obs.agent.row + delta[0], obs.agent.col + delta[1]
                if 0 <= r < rows and 0 <= c < cols:
                    line = f"{line} (risk {risk_word(float(self.danger[r, c]))})"
            out.append(line)
        if "heading_deg" in obs.info:     # continuous-space envs (MiniWorld): no neighbour lines, a heading instead
            out.append(self._ahead_line(obs.agent.row, obs.agent.col, float(obs.info["heading_deg"])))
        return "\n".join(out)

    def _ahead_line(self, row: int, col: int, heading_deg: float) -> str:
        """"Memory: here risk low, ahead risk high." for the agent's cell and the cell its heading points to
        (heading 0 = +column, 90 = -row, as MiniWorld's top view)."""
        rows, cols = self.danger.shape
        rad = math.radians(heading_deg)
        r, c = row - round(math.sin(rad)), col + round(math.cos(rad))
        here = risk_word(float(self.danger[row, col])) if 0 <= row < rows and 0 <= col < cols else "unknown"
        ahead = f"risk {risk_word(float(self.danger[r, c]))}" if 0 <= r < rows and 0 <= c < cols else "the edge"
        return f"Memory: here risk {here}, ahead {ahead}."

    def hints(self, obs: env_pb2.Observation) -> MemoryHints:
        """Skills and exemplars as queried; the overlay drawn on this turn's frame around the agent's cell."""
        picture = None
        if self.overlay and len(obs.images) > 1 and "top_view_grid_box" in obs.info:
            # the env sends a top-down map and where its grid lies in it (MiniWorld): draw the maps on the map
            box = tuple(int(v) for v in obs.info["top_view_grid_box"])
            agent = (obs.agent.row, obs.agent.col) if obs.HasField("agent") else None
            picture = overlay_box(codec.decode(obs.images[1]), self.danger, self.affinity, box, agent=agent)  # type: ignore[arg-type]
        elif self.overlay:
            frame = codec.decode(obs.images[0]) if obs.images else None
            if frame is not None and (frame.ndim != 3 or frame.shape[-1] != 3):
                frame = None                                   # not an RGB frame: the overlay on its own canvas
            agent = (obs.agent.row, obs.agent.col) if obs.HasField("agent") else None
            danger, affinity = self.danger, self.affinity
            key: tuple[int, ...] = ()
            if self.window is not None and agent is not None:   # the window of the maps the frame shows
                danger, affinity = window_of(danger, agent, self.window), window_of(affinity, agent, self.window)
                key, agent = agent, (self.window, self.window)
            layers = None
            if frame is not None:   # the maps are frozen: their tint layers are computed once per frame size (and window)
                key = (*key, *frame.shape[:2])
                if key not in self._layers:
                    self._layers[key] = overlay_layers(danger, affinity, *frame.shape[:2])
                layers = self._layers[key]
            picture = render_overlay(frame, danger, affinity, agent=agent, layers=layers)
        return MemoryHints(skills=list(self.skills), exemplars=list(self._exemplar_tensors), blend=self.blend,
                           overlay=None if picture is None else codec.encode(picture, "memory_overlay"))
