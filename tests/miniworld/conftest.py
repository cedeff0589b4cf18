"""MiniWorld tests need the miniworld extra and headless OpenGL (EGL through Mesa on CPU hosts): skip with the
reason, or fail when ATLASRL_REQUIRE_MINIWORLD=1 (CI must run them, never skip)."""
import os

import pytest

from tests.envserver.conftest import start_server  # noqa: F401  (a real env server on port 0, for the compliance suite)


def require_miniworld() -> None:
    from atlasrl.envserver.miniworld.gl import MiniWorldUnavailable, call, installed, load

    problem = None
    if not installed():
        problem = "miniworld is not installed (pip install 'atlasrl[miniworld]')"
    else:
        try:
            call(load)
        except MiniWorldUnavailable as e:
            problem = str(e)
    if problem is None:
        return
    if os.environ.get("ATLASRL_REQUIRE_MINIWORLD") == "1":
        pytest.fail(f"ATLASRL_REQUIRE_MINIWORLD=1 but MiniWorld cannot run: {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="module")
def miniworld_ready():
    require_miniworld()
