"""ManiSkill tests need mani_skill and a Vulkan device: skip with the probe's message,
or fail when ATLASRL_REQUIRE_MANISKILL=1 (CI must run them, never skip)."""
import os

import pytest
import pytest_asyncio


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


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def maniskill_server(maniskill_ready):
    """A real env server serving maniskill in-process (threads; 4, so four envs step at once), one per test module."""
    from atlasrl.envserver.config import EnvServerConfig
    from atlasrl.envserver.server import EnvServer

    s = EnvServer(EnvServerConfig(port=0, workers=0, threads=4, envs=["maniskill"]))
    await s.start()
    yield s
    await s.stop(0)
