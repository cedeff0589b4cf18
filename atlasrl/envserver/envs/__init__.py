"""Built-in grid games, registered with the env registry (and Gymnasium's) on import.

    registry.make("frozenlake", {"size": "8"}, seed=0)
    registry.make("sokoban", {"num_boxes": "2"}, seed=0)
    gymnasium.make("atlasrl/Sokoban-v0", size=8, num_boxes=2)   # keyword config, any value types
"""
from __future__ import annotations

import gymnasium

from atlasrl.envserver.envs.frozenlake import FrozenLakeEnv
from atlasrl.envserver.envs.reach import ReachEnv
from atlasrl.envserver.envs.sokoban import SokobanEnv
from atlasrl.envserver.registry import register

register("frozenlake", FrozenLakeEnv.from_config)
register("sokoban", SokobanEnv.from_config)
register("reach", ReachEnv.from_config)   # numeric actions (action-head policies): docs/action_head.md


def make_gym_frozenlake(render_mode: str | None = "rgb_array", seed: int | None = None, **config) -> FrozenLakeEnv:
    """gymnasium.make entry point: config as keyword arguments (rendering is always rgb_array)."""
    return FrozenLakeEnv.from_config({key: _config_string(v) for key, v in config.items()}, seed)


def make_gym_sokoban(render_mode: str | None = "rgb_array", seed: int | None = None, **config) -> SokobanEnv:
    """gymnasium.make entry point: config as keyword arguments (rendering is always rgb_array)."""
    return SokobanEnv.from_config({key: _config_string(v) for key, v in config.items()}, seed)


def _config_string(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


for _gym_id, _entry in (("atlasrl/FrozenLake-v0", "make_gym_frozenlake"), ("atlasrl/Sokoban-v0", "make_gym_sokoban")):
    if _gym_id not in gymnasium.registry:
        gymnasium.register(id=_gym_id, entry_point=f"{__name__}:{_entry}")

__all__ = ["FrozenLakeEnv", "ReachEnv", "SokobanEnv"]
