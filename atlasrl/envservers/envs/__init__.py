"""Built-in grid games, registered with the env registry on import.

    registry.make("frozenlake", {"size": "8"}, seed=0)
    registry.make("sokoban", {"num_boxes": "2"}, seed=0)
"""
from __future__ import annotations

from atlasrl.envservers.envs.frozenlake import FrozenLakeEnv
from atlasrl.envservers.envs.sokoban import SokobanEnv
from atlasrl.envservers.registry import register

register("frozenlake", FrozenLakeEnv.from_config)
register("sokoban", SokobanEnv.from_config)

__all__ = ["FrozenLakeEnv", "SokobanEnv"]
