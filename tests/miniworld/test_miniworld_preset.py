"""The miniworld-nav preset validates as a run config and its env settings open the env they name."""
import pytest

from atlasrl.config.loader import load_config, presets
from atlasrl.envserver import registry
from atlasrl.envserver.miniworld.config import MiniWorldConfig


def test_preset_is_shipped_and_validates():
    assert "miniworld-nav" in presets()
    cfg = load_config(preset="miniworld-nav")
    assert cfg.actor.env_id == "miniworld:Hallway" and cfg.model.arch == "qwen2.5-vl" and cfg.model.path is None
    assert cfg.envserver.allows(cfg.actor.env_id) and cfg.learner.max_staleness == cfg.coordinator.max_staleness
    env_cfg = MiniWorldConfig.from_strings(cfg.actor.env_config)
    assert env_cfg.image_size % 28 == 0, "whole merged Qwen2.5-VL image tokens (28 px)"
    assert env_cfg.max_actions_per_turn == 1 and cfg.actor.action_mode == "choice"


@pytest.mark.usefixtures("miniworld_ready")
def test_preset_env_opens_with_its_settings():
    cfg = load_config(preset="miniworld-nav")
    env = registry.make(cfg.actor.env_id, dict(cfg.actor.env_config), seed=cfg.run.eval_seed_start)
    try:
        spec = env.spec_info()
        assert spec.image_shape == (84, 84, 3) and spec.max_steps == 40 and spec.max_actions_per_turn == 1
        first = env.text_reset()
        turned = env.text_step("turn left")
        assert (turned.info["heading_deg"] - first.info["heading_deg"]) % 360 == pytest.approx(45, abs=0.01)
    finally:
        env.close()
