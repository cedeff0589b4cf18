"""`atlasrl up` with a critic: the plan starts it and wires actors to it; the summary reports its figures; the CLI
starts on a default needing no files."""
from __future__ import annotations

import pytest
import yaml

from atlasrl.config import load_config
from atlasrl.config.loader import ConfigError


def plan_files(tmp_path, *sets) -> dict:
    from atlasrl.up.plan import build_plan
    from atlasrl.up.rundir import RunDir

    cfg = load_config(None, [f"run.run_dir={tmp_path / 'run'}", *sets])
    plan = build_plan(cfg, RunDir.create(cfg), model_dir=str(tmp_path))
    return {n: yaml.safe_load(f.read_text()) for n, f in plan.config_files.items()}


def test_up_starts_a_critic_and_wires_the_actors_to_it(tmp_path):
    files = plan_files(tmp_path, "processes.critic=true", "actor.reward.source=critic", "critic.backend=oracle",
                       "actor.memory_shaping=false")
    critic = files["critic"]
    assert critic["backend"] == "oracle" and critic["coordinator"]
    address = f"{critic['server']['host']}:{critic['server']['port']}"
    assert files["actor-0"]["reward"] == {**files["actor-0"]["reward"], "source": "critic", "critic_address": address}


def test_critic_reward_without_a_critic_is_refused(tmp_path):
    with pytest.raises((ConfigError, ValueError), match=r"reward\.source=critic needs a critic"):
        load_config(None, [f"run.run_dir={tmp_path}", "actor.reward.source=critic"])
    with pytest.raises((ConfigError, ValueError), match="memory shaping"):   # learned from env success
        load_config(None, [f"run.run_dir={tmp_path}", "actor.reward.source=critic", "processes.critic=true"])
    assert "critic" not in plan_files(tmp_path)   # off by default


def test_run_summary_reports_latency_calls_and_agreement():
    from atlasrl.actors.critic_reward import run_summary, summary_line

    counters = {"actor.critic_calls": 200, "actor.critic_latency_ms_sum": 1000, "actor.critic_tp": 8,
                "actor.critic_fp": 2, "actor.critic_fn": 8, "actor.critic_tn": 30, "actor.critic_fallback_env": 3,
                "actor.env_steps": 5}
    s = run_summary(counters, wall_s=100.0)
    assert s["calls_per_s"] == 2.0 and s["latency_ms_mean"] == 5.0 and s["fallbacks"]["env"] == 3
    assert s["agreement"]["precision"] == 0.8 and s["agreement"]["recall"] == 0.5
    assert s["agreement"]["f1"] == pytest.approx(2 * 0.8 * 0.5 / 1.3, abs=1e-3)
    assert "precision 0.80 recall 0.50 F1 0.6" in summary_line(s)
    assert run_summary({"actor.env_steps": 5}, 10.0) is None


def test_critic_cli_defaults_need_no_files():
    from typer.testing import CliRunner

    from atlasrl.cli.main import app, build

    build()
    r = CliRunner().invoke(app, ["critic", "--print-config"])
    assert r.exit_code == 0, r.output
    cfg = yaml.safe_load(r.output)
    assert cfg["backend"] == "value" and cfg["model"] == "" and cfg["server"]["port"] == 50057
    r = CliRunner().invoke(app, ["critic", "--backend", "hf", "--print-config"])
    assert r.exit_code != 0 and "backend=hf needs model" in r.output
