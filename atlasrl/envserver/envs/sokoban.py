"""Sokoban on procedurally generated rooms (solvable by construction, see sokoban_gen).

The player pushes boxes (never pulls); the level is solved when every box is on
a target. A box pushed into a dead position — a non-target corner, or a 2x2
block of walls and boxes holding a box off target — can never reach a target:
``info["deadlock"]`` reports it and, by default, the episode ends as a failure.

    env = SokobanEnv.from_config({"size": "8", "num_boxes": "2"}, seed=3)
    out = env.text_step("Left, Up")
"""
from __future__ import annotations

from typing import Any

import numpy as np

from atlasrl.envserver.base import Entity
from atlasrl.envserver.envs.config import SokobanConfig, parse_config
from atlasrl.envserver.envs.grid_actions import ACTIONS, DELTAS
from atlasrl.envserver.envs.grid_env import GridTextEnv, offset_phrase
from atlasrl.envserver.envs.render import SOKOBAN_SPRITES
from atlasrl.envserver.envs.sokoban_gen import Room, generate_room

# Sprite codes: static tile (wall 0, floor 1, target 2); a box adds 2, the player adds 4.
WALL, FLOOR, TARGET, BOX_OFFSET, PLAYER_OFFSET = 0, 1, 2, 2, 4
CHARS = {0: "#", 1: "_", 2: "O", 3: "X", 4: "√", 5: "P", 6: "S"}
_CHAR_OF_CODE = np.array([CHARS[code] for code in range(len(CHARS))])
_FROM_CHAR = {"#": (True, False, False), "_": (False, False, False), "O": (False, True, False),
              "X": (False, False, True), "√": (False, True, True), "P": (False, False, False),
              "S": (False, True, False)}


def is_deadlocked(walls: np.ndarray, targets: np.ndarray, boxes: np.ndarray, box: tuple[int, int]) -> bool:
    """Whether the box at ``box`` (or one it blocks) can never move to a target again."""
    r, c = box
    if not targets[r, c] and (walls[r - 1, c] or walls[r + 1, c]) and (walls[r, c - 1] or walls[r, c + 1]):
        return True
    for top in (r - 1, r):                    # the four 2x2 squares that contain the box
        for left in (c - 1, c):
            square = (slice(top, top + 2), slice(left, left + 2))
            solid = walls[square] | boxes[square]
            if solid.all() and (boxes[square] & ~targets[square]).any():
                return True
    return False


class SokobanEnv(GridTextEnv):
    config: SokobanConfig
    family = "sokoban"
    sprites = SOKOBAN_SPRITES
    legend = "Legend: # wall, _ floor, O target, X box, √ box on target, P you, S you on a target."
    task = "Push every box onto a target."

    @classmethod
    def from_config(cls, config: dict[str, str], seed: int | None = None,
                    env_id: str = "sokoban") -> SokobanEnv:
        return cls(parse_config(SokobanConfig, config), seed, env_id)

    def __init__(self, config: SokobanConfig, seed: int | None = None, env_id: str = "sokoban"):
        self.config = config
        super().__init__(config, seed, env_id)

    @property
    def instruction(self) -> str:
        if self.config.text_mode == "none":
            return ("You are the warehouse keeper: the person in the image. Push every crate onto a target "
                    "(red ring); crates can be pushed but not pulled, so never push one into a corner.")
        return ("You are the warehouse keeper (P). Push every box (X) onto a target (O); "
                "boxes can be pushed but not pulled, so never push one into a corner.")

    def _new_level(self, rng: np.random.Generator) -> None:
        self._set_room(generate_room(self.config.size, self.config.num_boxes, rng))

    def load_level(self, rows: list[str]) -> None:
        """Play a hand-made room in the text legend (walls all around), e.g. for tests."""
        size = self.config.size
        if len(rows) != size or any(len(r) != size or set(r) - set(_FROM_CHAR) for r in rows):
            raise ValueError(f"level must be {size}x{size} of the characters {''.join(_FROM_CHAR)}")
        cells = np.array([[_FROM_CHAR[ch] for ch in row] for row in rows])
        players = [(r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch in "PS"]
        if len(players) != 1 or not (cells[[0, -1], :, 0].all() and cells[:, [0, -1], 0].all()):
            raise ValueError("level needs exactly one player and walls all around")
        self._set_room(Room(walls=cells[..., 0], targets=cells[..., 1], boxes=cells[..., 2], player=players[0]))
        self._start_episode()

    def _set_room(self, room: Room) -> None:
        self.walls, self.targets = room.walls, room.targets
        self.boxes, self.player = room.boxes.copy(), room.player
        self._initial = room
        self._static_codes = np.where(room.walls, WALL, np.where(room.targets, TARGET, FLOOR))
        self.deadlock = False
        self._target_entities = [Entity("target", (int(r), int(c))) for r, c in np.argwhere(room.targets)]

    def _apply(self, action: int) -> tuple[float, str | None]:
        dr, dc = DELTAS[action]
        way = ACTIONS[action].lower()
        ahead = (self.player[0] + dr, self.player[1] + dc)
        if self.walls[ahead]:
            self._event("You bumped into a wall.")
            return 0.0, None
        reward = 0.0
        if self.boxes[ahead]:
            dest = (ahead[0] + dr, ahead[1] + dc)
            if self.walls[dest] or self.boxes[dest]:
                self._event(f"You pushed a box {way} but it is blocked.")
                return 0.0, None
            self.boxes[ahead], self.boxes[dest] = False, True
            reward += self.config.box_on_target_reward * (int(self.targets[dest]) - int(self.targets[ahead]))
            self._event(f"You pushed a box {way}{' onto a target' if self.targets[dest] else ''}.")
            if (self.boxes == self.targets).all():
                self.player = ahead
                self._event("Every box is on a target.")
                return reward + self.config.success_reward, "success"
            stuck = is_deadlocked(self.walls, self.targets, self.boxes, dest)
            if stuck and not self.deadlock:
                self._event("The box is stuck: it can never reach a target.")
            self.deadlock = self.deadlock or stuck
        else:
            self._event(f"You moved {way}.")
        self.player = ahead
        if self.deadlock and self.config.deadlock_ends_episode:
            return reward + self.config.deadlock_penalty, "deadlock"
        return reward, None

    def _game_info(self) -> dict[str, Any]:
        return {"boxes_on_target": int((self.boxes & self.targets).sum()),
                "num_boxes": self.config.num_boxes, "deadlock": bool(self.deadlock)}

    def tile_codes(self) -> np.ndarray:
        codes = self._static_codes + BOX_OFFSET * self.boxes
        codes[self.player] += PLAYER_OFFSET
        return codes

    def _grid_rows(self) -> list[str]:
        return ["".join(row) for row in _CHAR_OF_CODE[self.tile_codes()].tolist()]

    def _relative_text(self) -> str:
        def describe(r: int, c: int) -> str:
            if self.walls[r, c]:
                return "wall"
            if not self.boxes[r, c]:
                return "target" if self.targets[r, c] else "floor"
            name = "box on target" if self.targets[r, c] else "box"
            dr, dc = r - self.player[0], c - self.player[1]
            beyond = (r + dr, c + dc)
            movable = not (self.walls[beyond] or self.boxes[beyond])
            return f"{name} ({'can be pushed' if movable else 'blocked'})"

        lines = self._neighbour_lines(describe)
        for kind, mask in (("Boxes", self.boxes), ("Targets", self.targets)):
            places = []
            for r, c in np.argwhere(mask):
                on = " (on target)" if kind == "Boxes" and self.targets[r, c] else ""
                places.append(offset_phrase(self.player, (int(r), int(c))) + on)
            lines.append(f"{kind}: {'; '.join(places)}.")
        return "\n".join(lines)

    def agent_cell(self) -> tuple[int, int]:
        return self.player

    def entities(self) -> list[Entity]:
        boxes = [Entity("box", (int(r), int(c))) for r, c in np.argwhere(self.boxes)]
        return boxes + self._target_entities

    def _level_string(self) -> str:
        room = self._initial
        codes = np.where(room.walls, WALL, np.where(room.targets, TARGET, FLOOR)) + BOX_OFFSET * room.boxes
        codes[room.player] += PLAYER_OFFSET
        return "sokoban:" + "/".join("".join(row) for row in _CHAR_OF_CODE[codes].tolist())
