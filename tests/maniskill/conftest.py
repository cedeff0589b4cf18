"""ManiSkill tests need mani_skill and a Vulkan device: skip with the probe's message,
or fail when ATLASRL_REQUIRE_MANISKILL=1 (CI must run them, never skip)."""
import os

import pytest


def require_maniskill() -> None:
    from atlasrl.envserver.maniskill.probe import vulkan_problem

    problem = vulkan_problem()
    if problem is None:
        return
    if os.environ.get("ATLASRL_REQUIRE_MANISKILL") == "1":
        pytest.fail(f"ATLASRL_REQUIRE_MANISKILL=1 but ManiSkill cannot run: {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="module")
def maniskill_ready():
    require_maniskill()
