"""Which MiniWorld envs atlasrl serves, and what each asks of the agent.

Ids are ``miniworld:<Name>`` with the Gymnasium id's middle part
(``miniworld:Hallway`` is ``MiniWorld-Hallway-v0``); the full Gymnasium id is
accepted too. Sign is left out: its observation is a dict (image + goal index).
"""
from __future__ import annotations

from atlasrl.envserver.registry import UnknownEnv

NAMES: tuple[str, ...] = (
    "Hallway", "OneRoom", "OneRoomS6", "OneRoomS6Fast", "TMaze", "TMazeLeft", "TMazeRight", "YMaze",
    "YMazeLeft", "YMazeRight", "FourRooms", "ThreeRooms", "WallGap", "Maze", "MazeS2", "MazeS3", "MazeS3Fast",
    "Sidewalk", "PickupObjects", "PutNext", "RoomObjects", "CollectHealth",
)
_INSTRUCTIONS = {
    "Hallway": "Go to the red box at the end of the hallway.",
    "TMaze": "Go to the red box at one end of the T-shaped maze.",
    "YMaze": "Go to the red box at one end of the Y-shaped maze.",
    "FourRooms": "Find the red box, which may be in another room, and go to it.",
    "ThreeRooms": "Find the red box, which may be in another room, and go to it.",
    "WallGap": "Go through the gap in the wall and reach the red box.",
    "Maze": "Find the red box in the maze and go to it.",
    "Sidewalk": "Walk along the sidewalk to the red box without stepping into the street.",
    "PickupObjects": "Pick up every object in the room.",
    "PutNext": "Pick up the red box and put it next to the yellow box.",
    "RoomObjects": "Look around the room full of objects.",
    "CollectHealth": "Pick up health kits to stay alive as long as you can.",
}
_FAILURES = {"CollectHealth": "health_depleted", "Sidewalk": "walked_into_street"}


def canonical(name: str) -> str:
    """ "Hallway" or "MiniWorld-Hallway-v0" -> "Hallway"; unknown names raise EnvConfigError."""
    short = name.strip()
    if short.startswith("MiniWorld-") and short.endswith("-v0"):
        short = short[len("MiniWorld-"):-len("-v0")]
    if short not in NAMES:
        raise UnknownEnv(f"unknown MiniWorld env '{name}'; known: {', '.join(NAMES)}")
    return short


def gym_id(name: str) -> str:
    return f"MiniWorld-{name}-v0"


def instruction(name: str) -> str:
    for prefix, text in _INSTRUCTIONS.items():   # TMazeLeft -> TMaze, MazeS3Fast -> Maze, ...
        if name.startswith(prefix):
            return text
    return "Find the red box in the room and go to it."


def failure_cause(name: str) -> str:
    return _FAILURES.get(name, "failure")
