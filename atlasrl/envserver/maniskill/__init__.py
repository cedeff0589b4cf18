"""ManiSkill 3 tasks as atlasrl envs: ids ``maniskill:<Task>``, e.g. ``maniskill:PickCube-v1``.

mani_skill is an optional extra (``pip install 'atlasrl[maniskill]'``) and needs
a Vulkan device, so nothing here imports it: the factory does, when an env is made.
"""
from __future__ import annotations

from atlasrl.envserver import registry
from atlasrl.envserver.base import EnvConfigError, TextEnv
from atlasrl.envserver.maniskill.config import ManiSkillConfig
from atlasrl.envserver.maniskill.probe import ManiSkillUnavailable, vulkan_problem
from atlasrl.envserver.maniskill.tasks import VERIFIED_TASKS, MissingAssets

PREFIX = "maniskill"


def make_env(config: dict[str, str], seed: int | None, env_id: str) -> TextEnv:
    cfg = ManiSkillConfig.from_strings(config)  # cheap errors first
    task = env_id.split(":", 1)[1].strip() if ":" in env_id else ""
    if not task:
        raise EnvConfigError(f"env id '{env_id}' names no task; use e.g. maniskill:PickCube-v1")
    from atlasrl.envserver.maniskill.env import ManiSkillEnv

    return ManiSkillEnv(task, cfg, seed)


def list_env_ids() -> list[str]:
    """The verified tasks, when mani_skill is installed and can render here (cached probe;
    mani_skill itself is not imported, so listing stays cheap)."""
    return [f"{PREFIX}:{t}" for t in VERIFIED_TASKS] if vulkan_problem() is None else []


registry.register_prefix(PREFIX, make_env, list_env_ids)

__all__ = ["ManiSkillConfig", "ManiSkillUnavailable", "MissingAssets", "VERIFIED_TASKS", "make_env", "vulkan_problem"]
