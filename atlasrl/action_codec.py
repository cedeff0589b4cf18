"""Continuous robot actions as text a language model can write (VLA-0 style).

    codec = ActionCodec(low=[-1] * 7, high=[1] * 7, max_steps=4)   # bounds of the controller
    text = codec.encode(np.zeros(7))         # "500 500 500 500 500 500 500"
    text = codec.encode(chunk)               # (H, D) -> H*D integers, step-major
    dec = codec.decode("Action: 500 1000 0 500 500 500 1000")
    dec.actions, dec.valid, dec.reason       # (k, D) float32, True, ""

Each dimension is mapped linearly from the controller's bounds [low, high] onto
the integers 0..``bins`` (1000), so the quantization error is at most
(high - low) / (2 * bins) per dimension. A chunk of H steps is H*D integers,
written step after step.

Decoding never raises on text. Prose before and after the run of integers is
allowed (models like to write "Action: ..."), and commas or brackets count as
spaces; anything else is rejected with
``valid=False``, a ``reason`` naming the problem and ``actions`` set to the
caller's ``hold`` action (default: all zeros, i.e. "no motion" for delta
controllers):
  - no integers at all, or a count that is not k*D for 1 <= k <= max_steps;
  - a token between the integers that is not an integer (words, decimals);
  - an integer outside 0..bins.

``TemporalEnsemble`` smooths overlapping chunks: when a chunk is predicted at
every step, the action for step t is the (optionally exponentially weighted)
average of what the last H chunks predicted for t (ACT's temporal ensembling).

Pure numpy: actors use it without any simulator installed.
"""
from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

import numpy as np

BINS = 1000
# Integers, decimals and signed numbers are tokens; so is any other non-space run.
_TOKEN = re.compile(r"[+-]?\d+(?:\.\d+)?|\S+")
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
# Separators models write instead of spaces: "[500, 500, ...]" parses like "500 500 ...".
_SEPARATORS = str.maketrans({c: " " for c in ",;[]()"})


@dataclass
class DecodedAction:
    actions: np.ndarray          # (k, D) float32; the hold action (1, D) when invalid
    valid: bool                  # False: text rejected, ``actions`` is the fallback
    reason: str = ""             # why it was rejected (empty when valid)
    integers: list[int] = field(default_factory=list)  # the parsed integers (valid only)


class ActionCodec:
    """Maps continuous action vectors (or chunks of them) to integer text and back."""

    def __init__(self, low, high, max_steps: int = 1, bins: int = BINS):
        self.low = np.asarray(low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(high, dtype=np.float64).reshape(-1)
        if self.low.shape != self.high.shape or self.low.size == 0:
            raise ValueError(f"low and high must be non-empty and of equal length, got {self.low.shape} and {self.high.shape}")
        if not (np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high)) and np.all(self.high > self.low)):
            raise ValueError("bounds must be finite with high > low in every dimension")
        if max_steps < 1 or bins < 1:
            raise ValueError(f"max_steps and bins must be >= 1, got {max_steps} and {bins}")
        self.max_steps = int(max_steps)
        self.bins = int(bins)

    @classmethod
    def from_space(cls, space, max_steps: int = 1, bins: int = BINS) -> ActionCodec:
        """From a gymnasium ``Box`` (the controller's action space)."""
        return cls(space.low, space.high, max_steps=max_steps, bins=bins)

    @property
    def dim(self) -> int:
        return int(self.low.size)

    @property
    def max_error(self) -> np.ndarray:
        """Worst-case round-trip error per dimension for in-bounds actions."""
        return (self.high - self.low) / (2 * self.bins)

    # -- vectors <-> integers -------------------------------------------------
    def to_ints(self, actions) -> np.ndarray:
        """(D,) or (H, D) floats -> same-shape ints in 0..bins (values outside the bounds are clipped)."""
        a = np.asarray(actions, dtype=np.float64)
        if a.shape[-1:] != (self.dim,) or a.ndim not in (1, 2):
            raise ValueError(f"expected shape ({self.dim},) or (H, {self.dim}), got {a.shape}")
        unit = (np.clip(a, self.low, self.high) - self.low) / (self.high - self.low)
        return np.rint(unit * self.bins).astype(np.int64)

    def from_ints(self, ints) -> np.ndarray:
        """k*D ints (flat or (k, D)) -> (k, D) float32 actions."""
        q = np.asarray(ints, dtype=np.float64).reshape(-1, self.dim)
        return (self.low + q / self.bins * (self.high - self.low)).astype(np.float32)

    def encode(self, actions) -> str:
        """One action (D,) or a chunk (H, D) -> space-separated integers."""
        a = np.asarray(actions)
        if a.ndim == 2 and not 1 <= a.shape[0] <= self.max_steps:
            raise ValueError(f"chunk of {a.shape[0]} steps; this codec takes 1..{self.max_steps}")
        return " ".join(str(int(v)) for v in self.to_ints(a).reshape(-1))

    # -- text -> vectors ------------------------------------------------------
    def hold_action(self, hold=None) -> np.ndarray:
        if hold is None:
            return np.zeros((1, self.dim), dtype=np.float32)
        h = np.asarray(hold, dtype=np.float32).reshape(1, -1)
        if h.shape[1] != self.dim:
            raise ValueError(f"hold action has {h.shape[1]} dims, expected {self.dim}")
        return h

    def decode(self, text, hold=None) -> DecodedAction:
        """Parse action text; never raises on the text (see module docstring)."""
        fallback = self.hold_action(hold)
        ints, reason = self._parse(text)
        if reason:
            return DecodedAction(actions=fallback, valid=False, reason=reason)
        return DecodedAction(actions=self.from_ints(ints), valid=True, integers=ints)

    def _parse(self, text) -> tuple[list[int], str]:
        if not isinstance(text, str):
            return [], f"action must be text, got {type(text).__name__}"
        tokens = [(m.group(), bool(_NUMBER.fullmatch(m.group()))) for m in _TOKEN.finditer(text.translate(_SEPARATORS))]
        numeric = [i for i, (_, is_num) in enumerate(tokens) if is_num]
        if not numeric:
            return [], f"no integers found; expected {self._count_hint()} integers in 0..{self.bins}"
        run = tokens[numeric[0]: numeric[-1] + 1]
        stray = [tok for tok, is_num in run if not is_num]
        if stray:
            return [], f"unexpected token '{_clip(stray[0])}' between the integers; write only space-separated integers"
        decimals = [tok for tok, _ in run if not re.fullmatch(r"[+-]?\d+", tok)]
        if decimals:
            return [], f"'{_clip(decimals[0])}' is not an integer; write integers in 0..{self.bins}"
        ints = [int(tok) for tok, _ in run]
        n, d = len(ints), self.dim
        if n % d or not 1 <= n // d <= self.max_steps:
            return [], f"got {n} integers; expected {self._count_hint()} ({d} per step, 1..{self.max_steps} steps)"
        bad = [(i, v) for i, v in enumerate(ints) if not 0 <= v <= self.bins]
        if bad:
            i, v = bad[0]
            return [], f"integer {v} at position {i} (step {i // d}, dim {i % d}) is outside 0..{self.bins}"
        return ints, ""

    def _count_hint(self) -> str:
        counts = [str(self.dim * k) for k in range(1, self.max_steps + 1)]
        return counts[0] if len(counts) == 1 else ", ".join(counts[:-1]) + " or " + counts[-1]

    # -- prompt ---------------------------------------------------------------
    def describe(self, names: list[str] | None = None) -> str:
        """``EnvSpec.action_format``: how to write an action, for a prompt."""
        names = names or [f"a{i}" for i in range(self.dim)]
        dims = "; ".join(
            f"{n}: 0 = {lo:g}, {self.bins // 2} = {(lo + hi) / 2:g}, {self.bins} = {hi:g}"
            for n, lo, hi in zip(names, self.low, self.high)
        )
        steps = "one step" if self.max_steps == 1 else f"1 to {self.max_steps} steps, one after another"
        return (
            f"{self.dim} space-separated integers in 0..{self.bins} per step ({steps}), "
            f"each scaled linearly onto its dimension's range. Dimensions in order: {dims}. "
            f"Example (every dimension mid-range): {' '.join([str(self.bins // 2)] * self.dim)}"
        )

    def sample_text(self, rng: np.random.Generator, steps: int = 1) -> str:
        """Uniformly random valid action text (debug clients, smoke tests)."""
        return " ".join(str(v) for v in rng.integers(0, self.bins + 1, size=steps * self.dim))


class TemporalEnsemble:
    """Average the predictions for the current step from the last ``horizon`` chunks (VLA-0 / ACT).

        ens = TemporalEnsemble(horizon=4, dim=7)
        for t in range(T):
            chunk = policy(obs)                # (<= 4, 7), predicted at step t
            obs = env.step(ens.step(chunk))    # smoothed action for step t

    A policy that decides every ``k`` steps (k > 1: fewer model calls, fewer
    rendered frames) adds its chunk once and takes up to k actions:

        ens.add(chunk)                         # predicted at the current step
        for _ in range(k):
            action = ens.next()                # None once no chunk covers the step
            if action is None: break
            obs = env.step(action)

    Step t's action is the weighted mean of what every chunk still covering t
    predicted for it (a chunk added at step s covers s .. s + min(len, horizon) - 1).
    With k = 1 that is VLA-0's sliding window of H calls; with k = H the chunks do
    not overlap and each step's action is its own chunk's (open-loop chunking).

    Weights: w_i = exp(-decay * i), i = 0 for the oldest prediction. decay 0 is
    VLA-0's plain mean; decay > 0 favours older predictions (ACT uses 0.01);
    decay < 0 favours the newest.
    """

    def __init__(self, horizon: int, dim: int, decay: float = 0.0):
        if horizon < 1 or dim < 1 or not np.isfinite(decay):
            raise ValueError("horizon and dim must be >= 1 and decay finite")
        self.horizon, self.dim, self.decay = int(horizon), int(dim), float(decay)
        self.reset()

    def reset(self) -> None:
        self.t = 0
        self._chunks: deque[tuple[int, np.ndarray]] = deque()

    def add(self, chunk) -> None:
        """Register a chunk predicted at the current step (its row 0 is for this step)."""
        c = np.asarray(chunk, dtype=np.float64).reshape(-1, self.dim)[: self.horizon]
        self._chunks.append((self.t, c))

    def covered(self) -> bool:
        """Whether some chunk predicts the current step."""
        return any(self.t - start < len(c) for start, c in self._chunks)

    def next(self) -> np.ndarray | None:
        """The smoothed action for the current step, then advance; None (not advancing) when no chunk covers it."""
        while self._chunks and self.t - self._chunks[0][0] >= len(self._chunks[0][1]):
            self._chunks.popleft()           # chunks whose last step has passed
        preds = [c[self.t - start] for start, c in self._chunks if self.t - start < len(c)]
        if not preds:
            return None
        weights = np.exp(-self.decay * np.arange(len(preds)))
        self.t += 1
        return np.average(np.stack(preds), axis=0, weights=weights).astype(np.float32)

    def skip(self) -> None:
        """Advance one step without an ensembled action (the env held instead): older chunks stay aligned."""
        self.t += 1

    def step(self, chunk) -> np.ndarray:
        """Add the chunk predicted at the current step; return the action for it and advance."""
        self.add(chunk)
        out = self.next()
        assert out is not None  # the chunk just added covers this step
        return out


def _clip(s: str, n: int = 24) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."
