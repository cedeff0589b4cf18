"""Start-up probe: can SAPIEN get a Vulkan render device in this process's environment?

    problem = vulkan_problem()     # None when rendering works, else a message naming the fix

It runs ``sapien.render.SapienRenderer()`` in a child process: SAPIEN binds one
render device per process (a probe renderer in the server process would clash
with the env's own), and a broken driver must not take the server down. Without
a device the call fails in well under a second; the timeout only guards against
a wedged driver. The answer is cached per process.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys

PROBE_CODE = "import sapien\nsapien.render.SapienRenderer()\n"
LAVAPIPE_ICD = "/usr/share/vulkan/icd.d/lvp_icd.json"
FIX = (
    "Fix: on a CPU-only Debian 12 host run scripts/install-vulkan-driver.sh (Mesa lavapipe >= 23 from "
    f"bookworm-backports; the stock Mesa 22 is rejected); if it is installed but not found, "
    f"export VK_ICD_FILENAMES={LAVAPIPE_ICD}. On GPU hosts install the NVIDIA driver with its Vulkan ICD."
)


class ManiSkillUnavailable(RuntimeError):
    """mani_skill or a Vulkan device is missing; the message names the fix."""


def maniskill_installed() -> bool:
    return importlib.util.find_spec("mani_skill") is not None and importlib.util.find_spec("sapien") is not None


@functools.cache
def vulkan_problem(timeout_s: float = 20.0) -> str | None:
    """None if a SAPIEN renderer can be created, else why not and how to fix it."""
    if not maniskill_installed():
        return "mani_skill is not installed. Fix: pip install 'atlasrl[maniskill]' (or scripts/install.sh --maniskill)."
    try:
        proc = subprocess.run(
            [sys.executable, "-c", PROBE_CODE], stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=timeout_s, env=os.environ.copy(),
        )
    except subprocess.TimeoutExpired:
        return f"creating a SAPIEN renderer did not finish in {timeout_s:.0f} s (wedged Vulkan driver?). {FIX}"
    if proc.returncode == 0:
        return None
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    cause = lines[-1].strip() if lines else f"exit status {proc.returncode}"
    return f"SAPIEN found no usable Vulkan device ({cause}). {FIX}"


def require_renderer() -> None:
    problem = vulkan_problem()
    if problem:
        raise ManiSkillUnavailable(problem)
