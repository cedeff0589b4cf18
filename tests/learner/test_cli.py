"""`atlasrl learner` argument handling (no training: --dry-run and bad input)."""
import json

from typer.testing import CliRunner

from atlasrl.cli.learner import learner_app


def test_dry_run_writes_resolved_config_and_torchrun_command(tiny_model_dir, tmp_path):
    r = CliRunner().invoke(learner_app, ["--model", tiny_model_dir, "--algo", "ppo", "--nproc", "2", "--ckpt-dir", str(tmp_path),
                                         "--max-staleness", "3", "--coordinator", "127.0.0.1:50050", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "torch.distributed.run --standalone --nproc-per-node=2 -m atlasrl.learner.main" in r.output
    cfg = json.loads((tmp_path / "learner-config.json").read_text())
    assert (cfg["algo"], cfg["max_staleness"], cfg["coordinator"], cfg["ckpt_dir"]) == ("ppo", 3, "127.0.0.1:50050", str(tmp_path))
    assert (cfg["max_sessions_per_client"], cfg["session_idle_timeout_s"]) == (None, None)


def test_session_flags_reach_the_config_and_an_omitted_flag_keeps_the_config_file(tiny_model_dir, tmp_path):
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"session_idle_timeout_s": 30.0}))
    r = CliRunner().invoke(learner_app, ["--model", tiny_model_dir, "--ckpt-dir", str(tmp_path), "--config", str(extra),
                                         "--max-sessions-per-client", "3", "--dry-run"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "learner-config.json").read_text())
    assert (cfg["max_sessions_per_client"], cfg["session_idle_timeout_s"]) == (3, 30.0)
    r = CliRunner().invoke(learner_app, ["--model", tiny_model_dir, "--max-sessions-per-client", "0", "--dry-run"])
    assert r.exit_code != 0 and "max_sessions_per_client" in r.output


def test_bad_arguments_name_the_problem(tiny_model_dir, tmp_path):
    r = CliRunner().invoke(learner_app, ["--model", str(tmp_path), "--dry-run"])
    assert r.exit_code != 0 and "no config.json" in r.output
    r = CliRunner().invoke(learner_app, ["--model", tiny_model_dir, "--algo", "dqn", "--dry-run"])
    assert r.exit_code != 0 and "algo" in r.output
    r = CliRunner().invoke(learner_app, ["export", "--ckpt", str(tmp_path), "--out", str(tmp_path / "o")], env={"COLUMNS": "400"})
    assert r.exit_code != 0 and "no complete checkpoint" in r.output


def test_decay_flags_reach_the_config_and_the_schedules_are_linear(tiny_model_dir, tmp_path):
    r = CliRunner().invoke(learner_app, ["--model", tiny_model_dir, "--ckpt-dir", str(tmp_path), "--entropy-coef", "0.3",
                                         "--entropy-coef-final", "0.05", "--entropy-decay-updates", "100", "--dry-run"])
    assert r.exit_code == 0, r.output
    from atlasrl.learner.config import LearnerConfig

    cfg = LearnerConfig(**json.loads((tmp_path / "learner-config.json").read_text()))
    assert [round(cfg.entropy_coef_at(v), 6) for v in (0, 50, 100, 5000)] == [0.3, 0.175, 0.05, 0.05]
    assert cfg.model_copy(update={"entropy_coef_final": None}).entropy_coef_at(5000) == 0.3
    assert cfg.lr_at(5000) == cfg.lr   # no --lr-final: constant
    r = CliRunner().invoke(learner_app, ["--model", tiny_model_dir, "--ckpt-dir", str(tmp_path), "--lr", "1e-3",
                                         "--lr-final", "1e-4", "--lr-decay-updates", "10", "--dry-run"])
    cfg = LearnerConfig(**json.loads((tmp_path / "learner-config.json").read_text()))
    assert [round(cfg.lr_at(v), 8) for v in (0, 5, 10, 99)] == [1e-3, 5.5e-4, 1e-4, 1e-4]
