"""GPUs per process: which of the host's GPUs a role sees (``CUDA_VISIBLE_DEVICES``), and how many it has.

A role's ``devices`` setting lists host GPU ids (``nvidia-smi`` numbering, or GPU UUIDs); the role, or the
launcher that starts it (`atlasrl up`), puts them in ``CUDA_VISIBLE_DEVICES`` before CUDA is initialised, so
inside the process they are ``cuda:0 .. cuda:n-1``. No torch import at module level: launchers use this too.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence

VAR = "CUDA_VISIBLE_DEVICES"


def split_ids(value: str | Sequence[str] | None) -> list[str]:
    """``"0,1"`` or ``["0", "1"]`` (ints too) -> ``["0", "1"]``; blanks dropped."""
    if value is None:
        return []
    if isinstance(value, str | int):
        value = str(value).split(",")
    return [str(s).strip() for s in value if str(s).strip()]


def check_ids(ids: Sequence[str], key: str) -> list[str]:
    """``ids`` validated for a config field: no duplicates (a ValueError naming ``key`` otherwise)."""
    ids = split_ids(ids)
    dup = sorted({d for d in ids if ids.count(d) > 1})
    if dup:
        raise ValueError(f"{key}: GPU {', '.join(dup)} listed twice")
    return ids


def gpu_env(devices: Sequence[str]) -> dict[str, str]:
    """The environment that gives a child process exactly ``devices`` (empty list: no GPU at all)."""
    return {VAR: ",".join(devices)}


def apply_devices(devices: Sequence[str], key: str) -> None:
    """Make this process see only ``devices`` (nothing when empty). Must run before CUDA is initialised."""
    if not devices:
        return
    value = ",".join(devices)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized() and os.environ.get(VAR) != value:
        raise RuntimeError(f"{key}: CUDA is already initialised in this process; {VAR}={value} comes too late")
    os.environ[VAR] = value


def visible_gpus() -> int:
    """CUDA GPUs this process can use (0 on a host without CUDA or with a CPU-only torch)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def describe_visible() -> str:
    """``CUDA_VISIBLE_DEVICES=...`` as this process has it, for error messages."""
    return f"{VAR}={os.environ[VAR]!r}" if VAR in os.environ else f"{VAR} unset"
