"""A small breadth-first Sokoban solver (fewest pushes), for tests and curricula.

Searches over push states (box cells + the player's reachable region), so the
player's walking never multiplies the state count; pushes into a non-target
corner are pruned (such a box can never move again). Exact for the rooms this
project generates (up to 10x10 with 3 boxes); ``max_states`` bounds the work.

    actions = solve(room.walls, room.targets, room.boxes, room.player)   # ["Up", "Left", ...] or None
"""
from __future__ import annotations

from collections import deque

import numpy as np

from atlasrl.envserver.envs.grid_actions import ACTIONS, DELTAS

Cell = tuple[int, int]


def solve(walls: np.ndarray, targets: np.ndarray, boxes: np.ndarray, player: Cell,
          max_states: int = 200_000) -> list[str] | None:
    """Primitive actions that solve the room, or None if unsolvable (or over max_states)."""
    wall_set = {(int(r), int(c)) for r, c in np.argwhere(walls)}
    target_set = frozenset((int(r), int(c)) for r, c in np.argwhere(targets))
    dead = _dead_corners(walls, target_set)
    start_boxes = frozenset((int(r), int(c)) for r, c in np.argwhere(boxes))
    start = (start_boxes, _canonical(player, wall_set, start_boxes))
    parents: dict = {start: None}
    queue = deque([(start_boxes, player)])
    while queue:
        box_set, standing = queue.popleft()
        if box_set <= target_set:
            return _replay(parents, (box_set, _canonical(standing, wall_set, box_set)), wall_set)
        reachable = _reachable(standing, wall_set, box_set)
        for box in box_set:
            for index, (dr, dc) in enumerate(DELTAS):
                stand, dest = (box[0] - dr, box[1] - dc), (box[0] + dr, box[1] + dc)
                if stand not in reachable or dest in wall_set or dest in box_set or dest in dead:
                    continue
                moved = (box_set - {box}) | {dest}
                key = (moved, _canonical(box, wall_set, moved))
                if key in parents:
                    continue
                parents[key] = ((box_set, _canonical(standing, wall_set, box_set)), stand, index, standing)
                if len(parents) > max_states:
                    return None
                queue.append((moved, box))
    return None


def _replay(parents: dict, state, walls: set[Cell]) -> list[str]:
    pushes = []
    while parents[state] is not None:
        previous, stand, index, standing = parents[state]
        pushes.append((previous[0], stand, index, standing))
        state = previous
    actions: list[str] = []
    for box_set, stand, index, standing in reversed(pushes):
        actions += walk(standing, stand, walls, box_set)
        actions.append(ACTIONS[index])
    return actions


def walk(start: Cell, goal: Cell, walls: set[Cell], boxes: frozenset[Cell]) -> list[str]:
    """Shortest walk (no pushes) from start to goal."""
    came: dict[Cell, tuple[Cell, int] | None] = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            break
        for index, (dr, dc) in enumerate(DELTAS):
            nxt = (cell[0] + dr, cell[1] + dc)
            if nxt not in came and nxt not in walls and nxt not in boxes:
                came[nxt] = (cell, index)
                queue.append(nxt)
    path, cell = [], goal
    while (step := came[cell]) is not None:
        cell, index = step
        path.append(ACTIONS[index])
    return path[::-1]


def _reachable(start: Cell, walls: set[Cell], boxes: frozenset[Cell]) -> set[Cell]:
    seen, stack = {start}, [start]
    while stack:
        cell = stack.pop()
        for dr, dc in DELTAS:
            nxt = (cell[0] + dr, cell[1] + dc)
            if nxt not in seen and nxt not in walls and nxt not in boxes:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def _canonical(player: Cell, walls: set[Cell], boxes: frozenset[Cell]) -> Cell:
    return min(_reachable(player, walls, boxes))


def _dead_corners(walls: np.ndarray, targets: frozenset[Cell]) -> set[Cell]:
    rows, cols = walls.shape
    dead = set()
    for r in range(1, rows - 1):
        for c in range(1, cols - 1):
            if not walls[r, c] and (r, c) not in targets and \
                    (walls[r - 1, c] or walls[r + 1, c]) and (walls[r, c - 1] or walls[r, c + 1]):
                dead.add((r, c))
    return dead
