"""Config strings of the grid games: defaults, parsing and errors that name the key."""
from __future__ import annotations

import pytest

from atlasrl.envserver import registry
from atlasrl.envserver.base import EnvConfigError

ENV_IDS = ["frozenlake", "sokoban"]


def test_defaults_are_resolved_into_spec_config():
    spec = registry.make("frozenlake", {}, seed=0).spec_info()
    assert spec.config["size"] == "4" and spec.config["slippery"] == "false"
    assert spec.config["max_steps"] == str(spec.max_steps) == "20"
    assert spec.config["max_actions_per_turn"] == "3" and spec.max_actions_per_turn == 3
    assert spec.grid_rows == spec.grid_cols == 4 and spec.image_shape == (128, 128, 3)
    assert spec.valid_actions == ["Up", "Down", "Left", "Right"]
    assert spec.instruction


def test_values_are_parsed_from_strings():
    spec = registry.make("frozenlake", {"size": "8", "slippery": "True", "hole_prob": "0.3",
                                        "max_steps": "77", "image_size": "64"}, seed=0).spec_info()
    assert (spec.grid_rows, spec.max_steps, spec.image_shape) == (8, 77, (64, 64, 3))
    assert spec.config["slippery"] == "true" and spec.config["hole_prob"] == "0.3"


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("key, value", [
    ("size", "big"), ("size", "1"), ("size", "100"), ("image_size", "-5"),
    ("max_actions_per_turn", "0"), ("text_mode", "pictures"), ("success_reward", "lots"),
    ("max_steps", "0"), ("step_penalty", "nan"),
])
def test_bad_value_names_key_and_value(env_id, key, value):
    with pytest.raises(EnvConfigError) as err:
        registry.make(env_id, {key: value}, seed=0)
    assert f"'{key}'" in str(err.value) and repr(value) in str(err.value)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_unknown_key_is_an_error_listing_valid_keys(env_id):
    with pytest.raises(EnvConfigError, match=r"unknown config key 'colour'.*valid keys: size"):
        registry.make(env_id, {"colour": "red"}, seed=0)


def test_frozenlake_specific_keys():
    with pytest.raises(EnvConfigError, match="'hole_prob'"):
        registry.make("frozenlake", {"hole_prob": "0.9"})
    with pytest.raises(EnvConfigError, match="'slippery'"):
        registry.make("frozenlake", {"slippery": "sometimes"})
    with pytest.raises(EnvConfigError, match="'num_boxes'"):
        registry.make("frozenlake", {"num_boxes": "2"})


def test_cross_field_error_names_the_keys():
    with pytest.raises(EnvConfigError, match=r"image_size=16.*size=8"):
        registry.make("frozenlake", {"size": "8", "image_size": "16"})


def test_non_string_values_are_rejected():
    with pytest.raises(EnvConfigError, match=r"'size'.*string"):
        registry.make("frozenlake", {"size": 8})


def test_sokoban_specific_keys():
    spec = registry.make("sokoban", {"size": "8", "num_boxes": "2", "deadlock_ends_episode": "false"}).spec_info()
    assert (spec.grid_rows, spec.config["num_boxes"], spec.config["deadlock_ends_episode"]) == (8, "2", "false")
    assert spec.max_steps == 5 * 8 + 20 * 2
    with pytest.raises(EnvConfigError, match="num_boxes=4 does not fit a 6x6 room"):
        registry.make("sokoban", {"num_boxes": "4"})
    with pytest.raises(EnvConfigError, match="'num_boxes'"):
        registry.make("sokoban", {"num_boxes": "0"})
    with pytest.raises(EnvConfigError, match="unknown config key 'hole_prob'"):
        registry.make("sokoban", {"hole_prob": "0.1"})
