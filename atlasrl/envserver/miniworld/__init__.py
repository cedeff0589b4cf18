"""MiniWorld 3D navigation envs: ids ``miniworld:<Name>``, e.g. ``miniworld:Hallway``.

miniworld is an optional extra (``pip install 'atlasrl[miniworld]'``); nothing
here imports it: the factory does (headless, on the OpenGL thread) when an env
is made.
"""
from __future__ import annotations

from atlasrl.envserver import registry
from atlasrl.envserver.base import EnvConfigError, TextEnv
from atlasrl.envserver.miniworld.config import MiniWorldConfig
from atlasrl.envserver.miniworld.gl import MiniWorldUnavailable, installed
from atlasrl.envserver.miniworld.tasks import NAMES, canonical

PREFIX = "miniworld"


def make_env(config: dict[str, str], seed: int | None, env_id: str) -> TextEnv:
    cfg = MiniWorldConfig.from_strings(config)  # cheap errors first
    name = env_id.split(":", 1)[1].strip() if ":" in env_id else ""
    if not name:
        raise EnvConfigError(f"env id '{env_id}' names no MiniWorld env; use e.g. miniworld:Hallway")
    name = canonical(name)
    if not installed():
        raise MiniWorldUnavailable("miniworld is not installed. Fix: pip install 'atlasrl[miniworld]'")
    from atlasrl.envserver.miniworld.env import MiniWorldTextEnv

    return MiniWorldTextEnv(name, cfg, seed)


def list_env_ids() -> list[str]:
    """The served envs, when miniworld is installed (not imported: listing stays cheap)."""
    return [f"{PREFIX}:{n}" for n in NAMES] if installed() else []


registry.register_prefix(PREFIX, make_env, list_env_ids)

__all__ = ["NAMES", "MiniWorldConfig", "MiniWorldUnavailable", "make_env"]
