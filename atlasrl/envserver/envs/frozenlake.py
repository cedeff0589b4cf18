"""FrozenLake on random, always-solvable maps.

The agent starts in the top-left corner; the goal is the bottom-right corner.
Each other cell is a hole with probability ``hole_prob``; maps are redrawn
until a breadth-first search finds a path (after 100 failed draws, holes are
cleared along a random monotone path, so generation always ends). Every map and
every slippery transition comes from the env's seeded ``np_random``: the same
seed gives the same maps and the same transitions.

    env = FrozenLakeEnv.from_config({"size": "8", "slippery": "true"}, seed=3)
    out = env.text_step("Right, Down")
"""
from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from atlasrl.envserver.base import Entity
from atlasrl.envserver.envs.config import FrozenLakeConfig, parse_config
from atlasrl.envserver.envs.grid_actions import ACTIONS, DELTAS
from atlasrl.envserver.envs.grid_env import GridTextEnv, offset_phrase
from atlasrl.envserver.envs.render import FROZENLAKE_SPRITES

FROZEN, HOLE, GOAL = 0, 1, 2
AGENT_SPRITE_OFFSET = 3           # sprite of the agent standing on tile k is 3 + k
CHARS = {FROZEN: "_", HOLE: "O", GOAL: "G"}
NAMES = {FROZEN: "frozen", HOLE: "hole", GOAL: "goal"}
_REDRAWS_BEFORE_CARVING = 100
# Slippery ice (gymnasium semantics): the intended move or either perpendicular one, 1/3 each.
_PERPENDICULAR = {0: (2, 3), 1: (2, 3), 2: (0, 1), 3: (0, 1)}


def path_exists(tiles: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> bool:
    """Breadth-first search over non-hole cells, 4-connected."""
    rows, cols = tiles.shape
    seen, queue = {start}, deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            return True
        for dr, dc in DELTAS:
            nxt = (cell[0] + dr, cell[1] + dc)
            if 0 <= nxt[0] < rows and 0 <= nxt[1] < cols and nxt not in seen and tiles[nxt] != HOLE:
                seen.add(nxt)
                queue.append(nxt)
    return False


def generate_map(size: int, hole_prob: float, rng: np.random.Generator) -> np.ndarray:
    """(size, size) tiles with start (0, 0) and goal (size-1, size-1) connected."""
    start, goal = (0, 0), (size - 1, size - 1)
    for _ in range(_REDRAWS_BEFORE_CARVING):
        tiles = np.where(rng.random((size, size)) < hole_prob, HOLE, FROZEN).astype(np.int64)
        tiles[start] = FROZEN
        tiles[goal] = GOAL
        if path_exists(tiles, start, goal):
            return tiles
    row = col = 0                 # carve a random right/down path through the last draw
    while (row, col) != goal:
        if col == size - 1 or (row < size - 1 and rng.random() < 0.5):
            row += 1
        else:
            col += 1
        tiles[row, col] = FROZEN
    tiles[goal] = GOAL
    return tiles


class FrozenLakeEnv(GridTextEnv):
    config: FrozenLakeConfig
    family = "frozenlake"
    sprites = FROZENLAKE_SPRITES
    legend = "Legend: P you, _ frozen ice, O hole, G goal."

    @classmethod
    def from_config(cls, config: dict[str, str], seed: int | None = None,
                    env_id: str = "frozenlake") -> FrozenLakeEnv:
        return cls(parse_config(FrozenLakeConfig, config), seed, env_id)

    def __init__(self, config: FrozenLakeConfig, seed: int | None = None, env_id: str = "frozenlake"):
        self.config = config
        self._moves: list[str] = []
        super().__init__(config, seed, env_id)

    @property
    def instruction(self) -> str:
        slip = " The ice is slippery: a move may go sideways." if self.config.slippery else ""
        return ("You are on a frozen lake (P). Reach the goal (G) without stepping into a hole (O)."
                + slip)

    def _new_level(self, rng: np.random.Generator) -> None:
        self.tiles = generate_map(self.config.size, self.config.hole_prob, rng)
        self.goal = (self.rows - 1, self.cols - 1)
        self.start = self.agent = (0, 0)
        self._index_level()

    def load_map(self, rows: list[str]) -> None:
        """Play a hand-made map ("P" start, "_" ice, "O" hole, "G" goal), e.g. for tests."""
        chars = {"P": FROZEN, **{c: k for k, c in CHARS.items()}}
        if len(rows) != self.rows or any(len(r) != self.cols or set(r) - set(chars) for r in rows):
            raise ValueError(f"map must be {self.rows}x{self.cols} of the characters P_OG")
        if "".join(rows).count("P") != 1 or "".join(rows).count("G") != 1:
            raise ValueError("map needs exactly one start P and one goal G")
        self.tiles = np.array([[chars[c] for c in r] for r in rows], dtype=np.int64)
        (self.start,) = [(r, row.index("P")) for r, row in enumerate(rows) if "P" in row]
        self.agent = self.start
        (self.goal,) = [(int(r), int(c)) for r, c in np.argwhere(self.tiles == GOAL)]
        self._index_level()
        self.layout_key = self._layout_key()
        self.steps, self.terminal_cause = 0, None

    def _index_level(self) -> None:
        """Views of the static map, computed once per level (the hot path only places the agent)."""
        self._static_rows = ["".join(CHARS[int(t)] for t in line) for line in self.tiles]
        holes = [Entity("hole", (int(r), int(c))) for r, c in np.argwhere(self.tiles == HOLE)]
        self._static_entities = [Entity("goal", self.goal), *holes]

    def _begin_turn(self) -> None:
        self._moves = []

    def _apply(self, action: int) -> tuple[float, str | None]:
        if self.config.slippery:
            action = (action, *_PERPENDICULAR[action])[int(self.np_random.integers(3))]
        self._moves.append(ACTIONS[action])
        dr, dc = DELTAS[action]
        row, col = self.agent[0] + dr, self.agent[1] + dc
        if self._inside(row, col):                     # walking into the edge: stay in place
            self.agent = (row, col)
        tile = self.tiles[self.agent]
        if tile == HOLE:
            return self.config.hole_penalty, "hole"
        if tile == GOAL:
            return self.config.success_reward, "success"
        return 0.0, None

    def _game_info(self) -> dict[str, Any]:
        return {"moves": list(self._moves)} if self.config.slippery else {}

    def tile_codes(self) -> np.ndarray:
        codes = self.tiles.copy()
        codes[self.agent] += AGENT_SPRITE_OFFSET
        return codes

    def _grid_rows(self) -> list[str]:
        rows = list(self._static_rows)
        r, c = self.agent
        rows[r] = rows[r][:c] + "P" + rows[r][c + 1:]
        return rows

    def _relative_text(self) -> str:
        # The neighbour block goes last: its four lines have a fixed shape, so each move's cell sits at the
        # same distance from the end of the prompt, where the model answers (easy to attend to by position).
        lines = [f"Goal: {offset_phrase(self.agent, self.goal)}."]
        lines += self._neighbour_lines(lambda r, c: NAMES[int(self.tiles[r, c])])
        return "\n".join(lines)

    def agent_cell(self) -> tuple[int, int]:
        return self.agent

    def entities(self) -> list[Entity]:
        return list(self._static_entities)

    def _level_string(self) -> str:
        return f"frozenlake:{self.start}:" + "/".join(self._static_rows)
