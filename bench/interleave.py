"""Interleaved timing of several modes of one workload, for the throughput benches on a shared machine.

    seconds = await interleaved_seconds({"gym": (block, close), "server": (block, close)}, per_block=30, rounds=4)

Each mode is ``(block, close)``: ``block(n)`` runs n steps (sync or async), ``close()`` frees it (sync or
async). Every mode is warmed up first (first frames, shader and pipe start-up, caches), then the modes run
in ``rounds`` interleaved blocks, so load drifting on a shared machine hits every mode alike; every mode is
closed at the end. Returns the seconds each mode spent in its timed blocks.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def _call(fn: Callable[..., Any], *args) -> None:
    res = fn(*args)
    if asyncio.iscoroutine(res):
        await res


async def interleaved_seconds(modes: dict[str, tuple[Callable, Callable]], per_block: int, rounds: int,
                              warmup: int = 3) -> dict[str, float]:
    try:
        for block, _ in modes.values():
            await _call(block, warmup)
        seconds = dict.fromkeys(modes, 0.0)
        for _ in range(rounds):
            for name, (block, _) in modes.items():
                t0 = time.perf_counter()
                await _call(block, per_block)
                seconds[name] += time.perf_counter() - t0
        return seconds
    finally:
        for _, close in modes.values():
            await _call(close)
