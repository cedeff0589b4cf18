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
