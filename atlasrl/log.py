"""Structured, quiet-by-default logging: ``ts level logger message key=value ...``.

Level from ``ATLASRL_LOG_LEVEL`` (default WARNING) or ``setup(level=...)``.
"""
from __future__ import annotations

import logging
import os
import sys
import time


class KVFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        line = f"{ts} {record.levelname.lower():7s} {record.name} {record.getMessage()}"
        extra = getattr(record, "kv", None)
        if extra:
            line += " " + " ".join(f"{k}={v}" for k, v in extra.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup(level: str | int | None = None, stream=None) -> None:
    level = level or os.environ.get("ATLASRL_LOG_LEVEL", "WARNING")
    root = logging.getLogger("atlasrl")
    root.setLevel(level if isinstance(level, int) else str(level).upper())
    if not any(getattr(h, "_atlasrl", False) for h in root.handlers):
        h = logging.StreamHandler(stream or sys.stderr)
        h.setFormatter(KVFormatter())
        h._atlasrl = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.propagate = False


def kv(**fields) -> dict:
    """``log.info("step", extra=kv(env=..., ms=...))``"""
    return {"kv": fields}


class ReasonSummary:
    """Log a flood of like events (refused episodes) as counts per reason, not one line each.

        refusals = ReasonSummary(log, "learner refused episodes", every_s=10)
        refusals.add("stale", "episode abc is 5 versions stale ...")   # first of each reason: logged in full
        ...                                                            # then one line per interval:
        # "learner refused episodes in the last 10 s: stale=412 unknown_version=3 (total 415)"

    ``add`` logs at most one summary line per ``every_s``; ``flush()`` writes what is left (at exit).
    Not thread-safe: call it from one thread (or loop).
    """

    def __init__(self, logger: logging.Logger, what: str, every_s: float = 10.0, level: int = logging.WARNING,
                 clock=time.monotonic):
        self.log, self.what, self.every_s, self.level, self._clock = logger, what, every_s, level, clock
        self.totals: dict[str, int] = {}
        self._since: dict[str, int] = {}
        self._last = clock()

    def add(self, reason: str, message: str = "", n: int = 1) -> None:
        if reason not in self.totals:
            self.log.log(self.level, "%s: first with reason %s: %s", self.what, reason, message)
        else:
            self._since[reason] = self._since.get(reason, 0) + n
        self.totals[reason] = self.totals.get(reason, 0) + n
        if self._since and self._clock() - self._last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if self._since:
            parts = " ".join(f"{k}={v}" for k, v in sorted(self._since.items()))
            self.log.log(self.level, "%s in the last %.0f s: %s (total %d)", self.what, self._clock() - self._last,
                         parts, sum(self._since.values()))
        self._since = {}
        self._last = self._clock()
