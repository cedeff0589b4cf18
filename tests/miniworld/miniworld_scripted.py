"""A scripted navigator for tests and baselines: turn towards the goal, then walk."""
from __future__ import annotations

import math


def toward(position: tuple[float, float], heading_deg: float, goal: tuple[float, float], turn_step: float = 15.0) -> str:
    """The next action word: heading 0 faces +x, 90 faces -z (MiniWorld's agent.dir)."""
    dx, dz = goal[0] - position[0], goal[1] - position[1]
    want = math.degrees(math.atan2(-dz, dx))
    diff = (want - heading_deg + 180) % 360 - 180
    if abs(diff) <= turn_step / 2 + 1:
        return "move forward"
    return "turn left" if diff > 0 else "turn right"
