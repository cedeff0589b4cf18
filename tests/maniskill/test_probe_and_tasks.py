"""Start-up probe, asset checks and registration (no env is created here)."""
import pytest

from atlasrl.envserver import registry
from atlasrl.envserver.base import EnvConfigError
from atlasrl.envserver.maniskill import probe, tasks
from atlasrl.envserver.maniskill.config import ManiSkillConfig

pytestmark = pytest.mark.maniskill


def test_probe_without_a_vulkan_device_names_the_fix(monkeypatch):
    if not probe.maniskill_installed():
        assert "pip install 'atlasrl[maniskill]'" in probe.vulkan_problem.__wrapped__()
        pytest.skip("mani_skill is not installed")
    monkeypatch.setenv("VK_ICD_FILENAMES", "/nonexistent/icd.json")
    problem = probe.vulkan_problem.__wrapped__()                 # uncached: a fresh child process
    assert problem.startswith("SAPIEN found no usable Vulkan device (")
    assert "scripts/install-vulkan-driver.sh" in problem and "VK_ICD_FILENAMES=" in problem


def test_probe_passes_here(maniskill_ready):
    assert probe.vulkan_problem() is None
    probe.require_renderer()


def test_download_prompt_becomes_an_error_not_input(maniskill_ready):
    from mani_skill.utils import download_asset

    with pytest.raises(tasks.MissingAssets, match="tasks that can run here: maniskill:PickCube-v1"):
        with tasks.no_download_prompt("UnitreeG1Stand-v1"):
            download_asset.prompt_yes_no("Robot asset unitree_g1 not found. Download?")
    with pytest.raises(tasks.MissingAssets, match="gave up while loading assets"):
        with tasks.no_download_prompt("X-v1"):
            exit()


def test_asset_check(maniskill_ready):
    tasks.check_task("PickCube-v1")
    assert tasks.missing_assets("PickSingleYCB-v1") == ["ycb"]
    with pytest.raises(EnvConfigError, match="unknown ManiSkill task 'Nope-v1'"):
        tasks.check_task("Nope-v1")


def test_registered_and_listed(maniskill_ready):
    ids = registry.list_ids()
    for task in ("PickCube-v1", "PushCube-v1", "StackCube-v1", "PegInsertionSide-v1", "PushT-v1"):
        assert f"maniskill:{task}" in ids
    with pytest.raises(EnvConfigError, match="names no task"):
        registry.make("maniskill:", {})
    with pytest.raises(EnvConfigError, match="maniskill config 'grid_size'"):
        registry.make("maniskill:PickCube-v1", {"grid_size": "1"})


def test_config_strings_round_trip():
    cfg = ManiSkillConfig.from_strings({"workspace": "-0.5, 0.5, -0.3, 0.3", "reward_mode": "sparse", "action_chunk": "4"})
    assert cfg.workspace == (-0.5, 0.5, -0.3, 0.3) and cfg.action_chunk == 4
    assert ManiSkillConfig.from_strings(cfg.as_strings()) == cfg
    with pytest.raises(EnvConfigError, match=r"'workspace'.*x_max > x_min"):
        ManiSkillConfig.from_strings({"workspace": "1,0,0,1"})
    with pytest.raises(EnvConfigError, match=r"'colour'.*keys: image_size"):
        ManiSkillConfig.from_strings({"colour": "red"})


def test_workspace_grid_projection_clips_to_the_edges():
    from atlasrl.envserver.maniskill.scene import Workspace

    ws = Workspace((-0.4, 0.4, -0.4, 0.4), 10, 10)
    assert ws.cell((0.0, 0.0, 0.3)) == (5, 5)
    assert ws.cell((-0.4, 0.399, 0)) == (0, 9)
    assert ws.cell((-3.0, 3.0, 0)) == (0, 9) and ws.cell((3.0, -3.0, 0)) == (9, 0)
