"""Choice mode: constrained decoding over a prefix trie of candidate token sequences.

    trie = ChoiceTrie(choice_token_ids(tokenizer, ["Up", "Down"], end_id=im_end))
    trie.allowed([])            # first tokens of every choice
    trie.allowed([up_id])       # [im_end]
    trie.index([up_id, im_end]) # 0

The distribution (trajectory.proto, ACTION_MODE_CHOICE): at response position
i the logits are restricted to ``allowed(response[:i])`` and normalised over
that set. Every choice ends with the end token, so no choice is a prefix of
another and a finished response names exactly one choice.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ChoiceError(ValueError):
    """Invalid choice set (empty, or one choice a prefix of another)."""


def choice_token_ids(tokenizer, choices: Sequence[str], end_id: int) -> list[list[int]]:
    """Token ids of each choice as the model would write it, plus the end token."""
    if not choices:
        raise ChoiceError("choice mode needs at least one choice")
    out = []
    for c in choices:
        ids = list(tokenizer.encode(c, add_special_tokens=False))
        if not ids:
            raise ChoiceError(f"choice {c!r} tokenizes to nothing")
        out.append(ids + [int(end_id)])
    return out


class ChoiceTrie:
    def __init__(self, choices: Sequence[Sequence[int]]):
        if not choices:
            raise ChoiceError("choice mode needs at least one choice")
        self.choices: list[tuple[int, ...]] = []
        self._root: dict = {}
        for i, seq in enumerate(choices):
            seq = tuple(int(t) for t in seq)
            if not seq:
                raise ChoiceError(f"choice {i} is empty")
            node = self._root
            for tok in seq:
                if "end" in node:
                    raise ChoiceError(f"choice {node['end']} is a prefix of choice {i}")
                node = node.setdefault(tok, {})
            self.choices.append(seq)
            if "end" in node:
                continue                      # duplicate: same distribution, index() gives the first
            if any(k != "end" for k in node):
                raise ChoiceError(f"choice {i} is a prefix of another choice")
            node["end"] = i

    def _node(self, prefix: Sequence[int]) -> dict | None:
        node: Any = self._root  # the trie's nested dicts
        for tok in prefix:
            node = node.get(int(tok))
            if node is None:
                return None
        return node

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """Tokens that extend ``prefix`` towards some choice (sorted); [] if none."""
        node = self._node(prefix)
        return [] if node is None else sorted(k for k in node if k != "end")

    def forced_tail(self, prefix: Sequence[int]) -> list[int] | None:
        """The tokens that must follow ``prefix`` to complete its choice when no position left is open, else None."""
        node, tail = self._node(prefix), []
        while node is not None and "end" not in node:
            if len(node) != 1:
                return None
            tok = next(iter(node))
            tail.append(tok)
            node = node[tok]
        return None if node is None else tail

    def index(self, seq: Sequence[int]) -> int | None:
        """Index (into the choices as given) of the complete choice ``seq``, else None."""
        node = self._node(seq)
        return None if node is None else node.get("end")

    @property
    def max_len(self) -> int:
        return max(len(c) for c in self.choices)


def allowed_per_position(choices: Sequence[Sequence[int]], response_ids: Sequence[int]) -> list[list[int]]:
    """Allowed token sets at each response position (what the learner masks with).

    Raises ChoiceError if ``response_ids`` is not exactly one of the choices.
    """
    trie = ChoiceTrie(choices)
    out = []
    for i, tok in enumerate(response_ids):
        allowed = trie.allowed(response_ids[:i])
        if int(tok) not in allowed:
            raise ChoiceError(f"response token {i} ({tok}) is not allowed by the choices")
        out.append(allowed)
    if trie.index(response_ids) is None:
        raise ChoiceError("response stops before completing a choice")
    return out
