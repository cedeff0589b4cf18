"""The grid games through gymnasium.make and its checkers."""
from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import atlasrl.envserver.envs  # noqa: F401  (registers the Gymnasium ids)


@pytest.mark.parametrize("gym_id, kwargs", [
    ("atlasrl/FrozenLake-v0", {"size": 8, "slippery": True}),
    ("atlasrl/Sokoban-v0", {"size": 7, "num_boxes": 2}),
])
def test_gymnasium_make_runs_an_episode_under_the_passive_checker(gym_id, kwargs):
    env = gymnasium.make(gym_id, render_mode="rgb_array", **kwargs)
    obs, info = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == (128, 128, 3) and obs.dtype == np.uint8
    assert env.unwrapped.config.size == kwargs["size"]
    done = False
    for action in np.random.default_rng(0).integers(4, size=200):
        obs, _reward, terminated, truncated, info = env.step(int(action))
        if terminated or truncated:
            done = True
            break
    assert done and "terminal_cause" in info
    assert np.array_equal(env.render(), obs)


@pytest.mark.parametrize("gym_id", ["atlasrl/FrozenLake-v0", "atlasrl/Sokoban-v0"])
def test_check_env_on_made_env(gym_id):
    check_env(gymnasium.make(gym_id, render_mode="rgb_array").unwrapped)


def test_bad_keyword_config_names_the_key():
    from atlasrl.envserver.base import EnvConfigError
    with pytest.raises(EnvConfigError, match="'hole_prob'"):
        gymnasium.make("atlasrl/FrozenLake-v0", hole_prob=2.0)
