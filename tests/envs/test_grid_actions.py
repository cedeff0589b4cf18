"""Action-text parsing of the grid games."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlasrl.envserver.envs.grid_actions import ACTIONS, ActionParseError, parse_actions


@pytest.mark.parametrize("text, expected", [
    ("Up", [0]),
    ("down", [1]),
    ("LEFT, right", [2, 3]),
    ("Left,Up", [2, 0]),
    ("  Right \n Down\tUp ", [3, 1, 0]),
    ("up,,down", [0, 1]),
])
def test_valid_texts(text, expected):
    assert parse_actions(text, max_actions=3) == expected


@pytest.mark.parametrize("text, named", [
    ("Jump", "'Jump'"),
    ("Up, Sideways", "'Sideways'"),
    ("Up.", "'Up.'"),
    ("move up", "'move'"),
])
def test_bad_token_is_named_and_valid_actions_listed(text, named):
    with pytest.raises(ActionParseError) as err:
        parse_actions(text, max_actions=3)
    assert named in str(err.value)
    assert "Up, Down, Left, Right" in str(err.value)


@pytest.mark.parametrize("text", ["", "   ", ",\n,"])
def test_empty_text_is_invalid(text):
    with pytest.raises(ActionParseError, match="no action"):
        parse_actions(text, max_actions=3)


def test_more_than_k_actions_is_invalid():
    assert parse_actions("Up Up Up", max_actions=3) == [0, 0, 0]
    with pytest.raises(ActionParseError, match="4 actions in one turn, at most 3"):
        parse_actions("Up Up Up Up", max_actions=3)


def test_long_garbage_token_is_shortened_in_the_message():
    with pytest.raises(ActionParseError) as err:
        parse_actions("x" * 10_000, max_actions=3)
    assert len(str(err.value)) < 200


_separator = st.sampled_from([",", " ", "\n", ", ", " ,\n"])
_casing = st.sampled_from([str.lower, str.upper, str.title, lambda s: s])


@given(st.lists(st.tuples(st.integers(0, 3), _casing), min_size=1, max_size=5), _separator)
def test_any_casing_and_separator_round_trips(actions, separator):
    text = separator.join(case(ACTIONS[index]) for index, case in actions)
    assert parse_actions(text, max_actions=5) == [index for index, _ in actions]


@given(st.text(max_size=30))
def test_arbitrary_text_parses_or_raises_parse_error(text):
    try:
        indices = parse_actions(text, max_actions=3)
    except ActionParseError:
        return
    assert 1 <= len(indices) <= 3 and all(0 <= i < 4 for i in indices)
