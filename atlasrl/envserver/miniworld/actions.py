"""Action text of MiniWorld envs: "turn left, move forward, move forward" -> [0, 2, 2].

Words are MiniWorld's action names with a space ("turn left", "move forward",
"pick up", ...) or their one-word short forms ("left", "forward", "pickup").
Separators are commas, semicolons, newlines or plain spaces; matching ignores
case and "_"/"-". As in the grid games a text is valid only when every word is
an action of this env and there are 1..max_actions of them; otherwise it is
rejected whole.
"""
from __future__ import annotations

import re

# MiniWorld's Actions enum, in order: the index is the Gymnasium action id.
WORDS: tuple[str, ...] = ("turn left", "turn right", "move forward", "move back", "pick up", "drop", "toggle", "done")
_ALIASES = {"left": 0, "right": 1, "forward": 2, "back": 3, "backward": 3, "pickup": 4}
_SPLIT = re.compile(r"[,;\s]+")
_SHOWN = 40


class ActionParseError(ValueError):
    """The text is not a valid action list; the message says why."""


def parse(text: str, n_actions: int, max_actions: int) -> list[int]:
    """Action ids of ``text`` for an env with the first ``n_actions`` words, or ActionParseError."""
    valid = WORDS[:n_actions]
    shown = [t for t in _SPLIT.split(text.replace("_", " ").replace("-", " ")) if t]   # the bad word is named as sent
    tokens = [t.lower() for t in shown]
    if not tokens:
        raise ActionParseError(f"no action in text; valid actions: {', '.join(valid)}")
    out: list[int] = []
    i = 0
    while i < len(tokens):
        pair = " ".join(tokens[i:i + 2])
        if pair in WORDS:
            index, i = WORDS.index(pair), i + 2
        elif tokens[i] in WORDS:                    # one-word actions: drop, toggle, done
            index, i = WORDS.index(tokens[i]), i + 1
        elif tokens[i] in _ALIASES:
            index, i = _ALIASES[tokens[i]], i + 1
        else:
            bad = shown[i] if len(shown[i]) <= _SHOWN else shown[i][:_SHOWN] + "..."
            raise ActionParseError(f"invalid action {bad!r}; valid actions: {', '.join(valid)}")
        if index >= n_actions:
            raise ActionParseError(f"action {WORDS[index]!r} does not exist in this env; valid actions: {', '.join(valid)}")
        out.append(index)
    if len(out) > max_actions:
        raise ActionParseError(f"{len(out)} actions in one turn, at most {max_actions} allowed (max_actions_per_turn)")
    return out
