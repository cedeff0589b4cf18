"""Which ManiSkill tasks can run here, their instructions, and creation that never prompts.

mani_skill offers to download missing assets with ``input()`` and calls
``exit()`` when the answer is no: in a server that is a hang (stdin open) or a
dead process. ``check_assets`` refuses such tasks up front from the task's
declared assets; ``no_download_prompt`` turns any prompt reached later (robot
assets are checked only while the scene loads) into ``MissingAssets``.
"""
from __future__ import annotations

import contextlib

from atlasrl.envserver.base import EnvConfigError

# Tabletop tasks checked to run with the assets that ship inside the mani_skill wheel.
VERIFIED_TASKS = (
    "PickCube-v1", "PushCube-v1", "StackCube-v1", "PegInsertionSide-v1", "PushT-v1",
    "PullCube-v1", "PokeCube-v1", "PlaceSphere-v1", "LiftPegUpright-v1", "RollBall-v1",
)

INSTRUCTIONS = {
    "PickCube-v1": "Pick up the red cube and move it to the green goal position.",
    "PushCube-v1": "Push the cube onto the red and white target on the table.",
    "StackCube-v1": "Pick up the red cube and stack it on top of the green cube.",
    "PegInsertionSide-v1": "Grasp the peg and insert it sideways into the hole of the box.",
    "PushT-v1": "Push the T-shaped block so that it covers the T-shaped goal on the table.",
    "PullCube-v1": "Pull the cube back onto the target behind it.",
    "PokeCube-v1": "Grasp the peg and use it to push the cube onto the goal.",
    "PlaceSphere-v1": "Pick up the ball and place it in the bin.",
    "LiftPegUpright-v1": "Lift the peg lying on the table so that it stands upright.",
    "RollBall-v1": "Push the ball so that it rolls into the goal region.",
}


class MissingAssets(EnvConfigError):
    """The task needs assets that are not installed; the message lists the tasks that can run."""


def instruction(task: str) -> str:
    return INSTRUCTIONS.get(task, f"Solve the ManiSkill task {task} with the robot arm.")


def runnable_hint() -> str:
    return "tasks that can run here: " + ", ".join(f"maniskill:{t}" for t in VERIFIED_TASKS)


def missing_assets(task: str) -> list[str]:
    """Declared asset ids of ``task`` that are not on disk (mani_skill must be importable)."""
    from mani_skill.utils import assets
    from mani_skill.utils.registration import REGISTERED_ENVS

    missing: list[str] = []
    for asset_id in REGISTERED_ENVS[task].asset_download_ids or []:
        if asset_id in assets.DATA_GROUPS:
            ids = assets.expand_data_group_into_individual_data_source_ids(asset_id)
        else:
            ids = [asset_id]
        missing += [i for i in ids if not assets.is_data_source_downloaded(i)]
    return sorted(set(missing))


def check_task(task: str) -> None:
    """Raise EnvConfigError for an unknown task and MissingAssets for one without its assets."""
    import mani_skill.envs  # noqa: F401  (registers the tasks)
    from mani_skill.utils.registration import REGISTERED_ENVS

    if task not in REGISTERED_ENVS:
        raise EnvConfigError(f"unknown ManiSkill task '{task}'; {runnable_hint()}")
    missing = missing_assets(task)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise MissingAssets(
            f"ManiSkill task '{task}' needs assets that are not installed ({shown}; download with "
            f"`python -m mani_skill.utils.download_asset {task}`); {runnable_hint()}"
        )


def _refuse_download(message: str) -> bool:
    what = message.replace("Would you like to download them now?", "").strip()
    raise MissingAssets(f"{what} Not downloading them (no interactive prompt in a server); {runnable_hint()}")


@contextlib.contextmanager
def no_download_prompt(task: str):
    """Create envs inside this: a download prompt raises MissingAssets instead of reading stdin.

    The prompt stays replaced for the whole process (set once, so envs created in
    parallel threads never see the original)."""
    from mani_skill.utils import download_asset

    download_asset.prompt_yes_no = _refuse_download
    try:
        yield
    except SystemExit as e:  # mani_skill calls exit() when assets stay missing
        raise MissingAssets(f"ManiSkill task '{task}' gave up while loading assets (exit {e.code}); {runnable_hint()}") from None
