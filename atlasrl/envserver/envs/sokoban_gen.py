"""Procedural Sokoban rooms that are solvable by construction (reverse play).

1. Carve the room: a random walk stamps small floor patterns into a room of
   walls (as in gym-sokoban's topology generator).
2. Put every box on its target and the player on a free floor cell.
3. Play backwards: the player walks at random and, moving away from an
   adjacent box, may pull it along. Every pull is a push played in reverse, so
   the forward game can undo the whole walk: each visited state is solvable.
4. Keep the visited state with the most boxes off target, then the largest
   total box displacement; of a few such candidate rooms keep the best one
   (small rooms are otherwise often one push from solved).

    room = generate_room(size=6, num_boxes=1, rng=np.random.default_rng(0))
    room.walls, room.targets, room.boxes, room.player
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atlasrl.envserver.envs.grid_actions import DELTAS

_PATTERNS = (                  # floor stamps (cells relative to the walker), as in gym-sokoban
    ((0, -1), (0, 0), (0, 1)),
    ((-1, 0), (0, 0), (1, 0)),
    ((0, -1), (0, 0), (1, 0)),
    ((0, -1), (0, 0), (1, -1), (1, 0)),
    ((0, 0), (0, 1), (1, 0)),
)
_TURN_PROB = 0.35
_PULL_PROB = 0.8
_MAX_ATTEMPTS = 200
_CANDIDATES = 4
_MIN_FLOOR_FRACTION = 0.4      # of the interior: rejects one-corridor rooms with nothing to plan


class GenerationError(RuntimeError):
    """No acceptable room after many attempts (only for extreme size/box settings)."""


@dataclass
class Room:
    walls: np.ndarray          # (size, size) bool
    targets: np.ndarray        # (size, size) bool
    boxes: np.ndarray          # (size, size) bool, the start position of the boxes
    player: tuple[int, int]


def generate_room(size: int, num_boxes: int, rng: np.random.Generator) -> Room:
    candidates: list[tuple[tuple[int, int], Room]] = []
    for _ in range(_MAX_ATTEMPTS):
        floor = carve_floor(size, rng)
        cells = np.argwhere(floor)
        if len(cells) < max(2 * num_boxes + 3, _MIN_FLOOR_FRACTION * (size - 2) ** 2):
            continue
        chosen = cells[rng.choice(len(cells), num_boxes + 1, replace=False)]
        targets = np.zeros_like(floor)
        targets[tuple(chosen[:-1].T)] = True
        found = reverse_play(~floor, targets, (int(chosen[-1][0]), int(chosen[-1][1])), rng,
                             steps=10 * len(cells))
        if found is not None:
            candidates.append(found)
            if len(candidates) == _CANDIDATES:
                break
    if not candidates:
        raise GenerationError(f"no solvable {size}x{size} room with {num_boxes} boxes "
                              f"after {_MAX_ATTEMPTS} attempts")
    return max(candidates, key=lambda scored: scored[0])[1]


def carve_floor(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size) bool floor mask, walls all around."""
    floor = [[False] * size for _ in range(size)]         # plain lists: scalar writes are cheap
    steps = int(1.5 * 2 * size)
    row, col = (int(v) for v in rng.integers(1, size - 1, size=2))
    turns = (rng.random(steps) < _TURN_PROB).tolist()
    headings = rng.integers(4, size=steps + 1).tolist()
    stamps = rng.integers(len(_PATTERNS), size=steps).tolist()
    direction = DELTAS[headings[-1]]
    for turn, heading, stamp in zip(turns, headings, stamps):
        if turn:
            direction = DELTAS[heading]
        row = min(max(row + direction[0], 1), size - 2)
        col = min(max(col + direction[1], 1), size - 2)
        for dr, dc in _PATTERNS[stamp]:
            r, c = row + dr, col + dc
            if 1 <= r < size - 1 and 1 <= c < size - 1:
                floor[r][c] = True
    return np.array(floor)


def reverse_play(walls: np.ndarray, targets: np.ndarray, player: tuple[int, int],
                 rng: np.random.Generator, steps: int) -> tuple[tuple[int, int], Room] | None:
    """Walk backwards from the solved state: (score, room), or None when no box left its target."""
    origins = [tuple(cell) for cell in np.argwhere(targets).tolist()]
    boxes = list(origins)                    # box i started on target origins[i]
    occupied = set(boxes)
    wall_set = set(map(tuple, np.argwhere(walls).tolist()))
    target_set = set(origins)
    best_score, best = (0, 0), None
    directions = rng.integers(4, size=steps).tolist()
    pulls = (rng.random(steps) < _PULL_PROB).tolist()
    for direction, pull in zip(directions, pulls):
        dr, dc = DELTAS[direction]
        ahead = (player[0] + dr, player[1] + dc)
        if ahead in wall_set or ahead in occupied:
            continue
        behind = (player[0] - dr, player[1] - dc)
        if not (pull and behind in occupied):
            player = ahead
            continue
        boxes[boxes.index(behind)] = player          # only a pull can change the score
        occupied.remove(behind)
        occupied.add(player)
        player = ahead
        score = (sum(b not in target_set for b in boxes),
                 sum(abs(b[0] - o[0]) + abs(b[1] - o[1]) for b, o in zip(boxes, origins)))
        if score > best_score:
            best_score, best = score, (list(boxes), player)
    if best is None:
        return None
    box_mask = np.zeros_like(targets)
    box_mask[tuple(np.array(best[0]).T)] = True
    return best_score, Room(walls=walls.copy(), targets=targets.copy(), boxes=box_mask, player=best[1])
