"""FrozenLake on random, always-solvable maps.

The agent starts in the top-left corner; the goal is the bottom-right corner.
Each other cell is a hole with probability ``hole_prob``; maps are redrawn
until a breadth-first search finds a path (after 100 failed draws, holes are
cleared along a random monotone path, so generation always ends). Every map and
every slippery transition comes from the env's seeded ``np_random``: the same
seed gives the same maps and the same transitions.

Tasks where a memory must help:

- ``hidden_holes=true``: holes look exactly like ice in the frame and in the
  text (grid "_", relative "frozen"); falling in one still ends the episode
  with terminal cause "hole" (info, ``StepOutput``, outcome text). The
  observation's entities leave holes out too: they travel with every
  observation, and although the prompt is built from text and frames only
  (atlasrl/actors/prompts.py), nothing the policy's side receives should name
  a hidden cell. The memory loses nothing by it: its record's static entities
  come from these entities, but only goals and targets of them are used
  (atlasrl/memory/skills.py); danger is learnt from where episodes end and
  their terminal causes (atlasrl/memory/atlas.py), which still say "hole".
- ``layout_pool=K``: the map of a level reset with seed s is layout s mod K of
  the pool, and layout k is ``generate_map`` with a generator seeded by
  ``(layout_pool_seed, k)``: K maps that recur, and another pool seed gives K
  others (held-out layouts). A reset without a seed draws k from the env's
  generator. Slippery moves still follow the episode's seed. The layout is
  identified only by ``layout_key``, which the env hashes from the true map
  (holes included, hidden or not), so the memory keys its atlases on the true
  layout; the key is never part of the text or the frame, and with hidden holes
  every layout of a size renders and reads the same.

    env = FrozenLakeEnv.from_config({"size": "8", "slippery": "true"}, seed=3)
    out = env.text_step("Right, Down")
"""
from __future__ import annotations

from collections import deque
from functools import lru_cache
from typing import Any

import numpy as np

from atlasrl.envserver.base import Entity
from atlasrl.envserver.envs.config import FrozenLakeConfig, parse_config
from atlasrl.envserver.envs.grid_actions import ACTIONS, DELTAS
from atlasrl.envserver.envs.grid_env import GridTextEnv, offset_phrase
from atlasrl.envserver.envs.render import FROZENLAKE_SPRITES

FROZEN, HOLE, GOAL = 0, 1, 2
AGENT_SPRITE_OFFSET = 3           # sprite of the agent standing on tile k is 3 + k
AGENT_IN_HIDDEN_HOLE = 6          # hidden_holes: the greyed agent on plain ice
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


@lru_cache(maxsize=4096)
def pool_layout(size: int, hole_prob: float, pool_seed: int, index: int) -> np.ndarray:
    """Layout ``index`` of the pool ``pool_seed``: a deterministic, solvable map (read-only, shared)."""
    tiles = generate_map(size, hole_prob, np.random.default_rng((pool_seed, index)))
    tiles.setflags(write=False)
    return tiles


class FrozenLakeEnv(GridTextEnv):
    config: FrozenLakeConfig
    family = "frozenlake"
    sprites = FROZENLAKE_SPRITES
    legend = "Legend: P you, _ frozen ice, O hole, G goal."
    hidden_legend = "Legend: P you, _ frozen ice (some hides a hole), G goal."
    task = "Reach the goal without falling into a hole."

    @classmethod
    def from_config(cls, config: dict[str, str], seed: int | None = None,
                    env_id: str = "frozenlake") -> FrozenLakeEnv:
        return cls(parse_config(FrozenLakeConfig, config), seed, env_id)

    def __init__(self, config: FrozenLakeConfig, seed: int | None = None, env_id: str = "frozenlake"):
        self.config = config
        self._moves: list[str] = []
        if config.hidden_holes:
            self.legend = self.hidden_legend
        super().__init__(config, seed, env_id)

    @property
    def instruction(self) -> str:
        hidden = self.config.hidden_holes
        if self.config.text_mode == "none":
            text = ("You are on a frozen lake: the person in the image. Reach the goal (the flag) without "
                    + ("falling into a hole; holes look like ice, you cannot see them." if hidden
                       else "stepping into a hole (dark blue)."))
        elif hidden:
            text = ("You are on a frozen lake (P). Reach the goal (G) without stepping into a hole; "
                    "holes look like ice (_), you cannot see them.")
        else:
            text = "You are on a frozen lake (P). Reach the goal (G) without stepping into a hole (O)."
        slip = " The ice is slippery: a move may go sideways." if self.config.slippery else ""
        return text + slip

    def _new_level(self, rng: np.random.Generator) -> None:
        cfg = self.config
        if cfg.layout_pool:
            seed = self.level_seed
            index = seed % cfg.layout_pool if seed is not None else int(rng.integers(cfg.layout_pool))
            self.tiles = pool_layout(cfg.size, cfg.hole_prob, cfg.layout_pool_seed, index).copy()
        else:
            self.tiles = generate_map(cfg.size, cfg.hole_prob, rng)
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
        self._start_episode()

    def _index_level(self) -> None:
        """Views of the static map, computed once per level (the hot path only places the agent).

        ``_static_rows`` is the true map (the source of layout_key); the shown tiles, rows and entities are
        what the observation carries: with hidden_holes, holes as ice and no hole entities."""
        self._static_rows = ["".join(CHARS[int(t)] for t in line) for line in self.tiles]
        hidden = self.config.hidden_holes
        self._shown_tiles = np.where(self.tiles == HOLE, FROZEN, self.tiles) if hidden else self.tiles.copy()
        self._shown_rows = ["".join(CHARS[int(t)] for t in line) for line in self._shown_tiles]
        listed = not hidden or self.config.oracle_holes   # oracle_holes: entities only, for an oracle memory arm
        holes = [Entity("hole", (int(r), int(c))) for r, c in np.argwhere(self.tiles == HOLE)] if listed else []
        self._static_entities = [Entity("goal", self.goal), *holes]

    def _begin_turn(self) -> None:
        self._moves = []

    def _apply(self, action: int) -> tuple[float, str | None]:
        intended = action
        if self.config.slippery:
            action = (action, *_PERPENDICULAR[action])[int(self.np_random.integers(3))]
        self._moves.append(ACTIONS[action])
        went = f"You {'moved' if action == intended else 'slipped'} {ACTIONS[action].lower()}"
        dr, dc = DELTAS[action]
        row, col = self.agent[0] + dr, self.agent[1] + dc
        if not self._inside(row, col):                 # walking into the edge: stay in place
            self._event("You bumped into the edge." if action == intended else f"{went} into the edge.")
        else:
            self.agent = (row, col)
        tile = self.tiles[self.agent]
        if tile == HOLE:
            self._event(f"{went} and fell into a hole.")
            return self.config.hole_penalty, "hole"
        if tile == GOAL:
            self._event(f"{went} and reached the goal.")
            return self.config.success_reward, "success"
        if self._inside(row, col):
            self._event(f"{went}.")
        return 0.0, None

    def _game_info(self) -> dict[str, Any]:
        return {"moves": list(self._moves)} if self.config.slippery else {}

    def tile_codes(self) -> np.ndarray:
        codes = self._shown_tiles.copy()
        if self.config.hidden_holes and self.tiles[self.agent] == HOLE:
            codes[self.agent] = AGENT_IN_HIDDEN_HOLE
        else:
            codes[self.agent] += AGENT_SPRITE_OFFSET
        return codes

    def _grid_rows(self) -> list[str]:
        rows = list(self._shown_rows)
        r, c = self.agent
        rows[r] = rows[r][:c] + "P" + rows[r][c + 1:]
        return rows

    def _relative_text(self) -> str:
        # The neighbour block goes last: its four lines have a fixed shape, so each move's cell sits at the
        # same distance from the end of the prompt, where the model answers (easy to attend to by position).
        lines = [f"Goal: {offset_phrase(self.agent, self.goal)}."]
        lines += self._neighbour_lines(lambda r, c: NAMES[int(self._shown_tiles[r, c])])
        return "\n".join(lines)

    def agent_cell(self) -> tuple[int, int]:
        return self.agent

    def entities(self) -> list[Entity]:
        return list(self._static_entities)

    def _level_string(self) -> str:
        return f"frozenlake:{self.start}:" + "/".join(self._static_rows)
