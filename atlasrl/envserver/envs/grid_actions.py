"""Action text of the grid games: "Left, Up" -> [2, 0].

Tokens are separated by commas, whitespace or newlines and matched without
regard to case. A text is valid when every token is an action name and there
are between 1 and ``max_actions`` of them; anything else is rejected whole, so
a half-understood answer never moves the agent.
"""
from __future__ import annotations

import re

ACTIONS: tuple[str, ...] = ("Up", "Down", "Left", "Right")
"""Action names; an action's index in this tuple is its Gymnasium action id."""

DELTAS: tuple[tuple[int, int], ...] = ((-1, 0), (1, 0), (0, -1), (0, 1))
"""(d_row, d_col) of each action, same order as ACTIONS."""

_BY_NAME = {name.lower(): index for index, name in enumerate(ACTIONS)}
_SEPARATORS = re.compile(r"[,\s]+")
_SHOWN_TOKEN_CHARS = 40


class ActionParseError(ValueError):
    """The text is not a valid action list; the message says why."""


def parse_actions(text: str, max_actions: int) -> list[int]:
    """Action indices of ``text``, or ActionParseError naming the bad token."""
    tokens = [token for token in _SEPARATORS.split(text) if token]
    if not tokens:
        raise ActionParseError(f"no action in text; valid actions: {', '.join(ACTIONS)}")
    indices: list[int] = []
    for token in tokens:
        index = _BY_NAME.get(token.lower())
        if index is None:
            shown = token if len(token) <= _SHOWN_TOKEN_CHARS else token[:_SHOWN_TOKEN_CHARS] + "..."
            raise ActionParseError(f"invalid action {shown!r}; valid actions: {', '.join(ACTIONS)}")
        indices.append(index)
    if len(indices) > max_actions:        # after the token check: a bad token is the clearer reason
        raise ActionParseError(
            f"{len(indices)} actions in one turn, at most {max_actions} allowed "
            f"(max_actions_per_turn)")
    return indices
