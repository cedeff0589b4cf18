"""The run config: file + dotted overrides, errors that name the key, round trip of the resolved config."""
import subprocess
import sys
from pathlib import Path

import pytest

from atlasrl.config import ConfigError, dump_config, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_file_then_overrides(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('[actor]\nnum_envs = 16\ngroup_size = 8\n[envserver]\nworkers = 3\nenv_config = {text_mode = "grid"}\n')
    cfg = load_config(f, ["actor.num_envs=24", "run.display=false", "learner.args=[--lr, '1e-5']"])
    assert (cfg.actor.num_envs, cfg.actor.group_size, cfg.envserver.workers) == (24, 8, 3)
    assert cfg.envserver.env_config == {"text_mode": "grid"} and cfg.run.display is False
    assert cfg.learner.args == ["--lr", "1e-5"]


def test_yaml_and_round_trip(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("run:\n  duration_s: 30\nactor:\n  count: 2\n")
    cfg = load_config(f)
    out = tmp_path / "resolved.yaml"
    out.write_text(dump_config(cfg))
    assert load_config(out) == cfg


@pytest.mark.parametrize("overrides,words", [
    (["actor.num_envs=0"], "actor.num_envs: Input should be greater than or equal to 1"),
    (["actor.num_env=3"], "actor.num_env: Extra inputs are not permitted"),
    (["learner.algo=dqn"], "learner.algo: Input should be 'grpo', 'gigpo' or 'ppo'"),
    (["actor.num_envs=6"], "must be a multiple of actor.group_size"),
    (["run.eval_seed_start=5"], "eval seeds must be held out"),
    (["coordinator.lease_ttl_s=-1"], "coordinator.lease_ttl_s: Input should be greater than 0.1"),
    (["nosection"], "expected section.key=value"),
    (["actor=3"], "key must be section.key"),
])
def test_invalid_values_name_the_key(overrides, words):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert words in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[actor\n")
    with pytest.raises(ConfigError, match="does not parse"):
        load_config(bad)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"use .toml"):
        load_config(tmp_path / "x.json")


def test_cli_config_show_and_error_exit():
    code = ("import typer, sys; from atlasrl.cli import config; app = typer.Typer(); config.register(app); "
            "app.command('noop')(lambda: None); app()")
    ok = subprocess.run([sys.executable, "-c", code, "config", "show", "--set", "actor.num_envs=12", "--env", "sokoban"],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert "num_envs: 12" in ok.stdout and "env: sokoban" in ok.stdout
    bad = subprocess.run([sys.executable, "-c", code, "config", "show", "--set", "actor.group_size=-2"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "actor.group_size" in bad.stderr


def test_importable_without_torch():
    r = subprocess.run([sys.executable, "-c", "import sys, atlasrl.config, atlasrl.coordinator.server, atlasrl.clients.coordinator;"
                        " assert 'torch' not in sys.modules"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_plan_gives_memory_shaping_the_learners_step_discount(tmp_path):
    """Shaping telescopes in GiGPO's step returns only when both use one discount."""
    from atlasrl.up.plan import build_plan
    from atlasrl.up.rundir import RunDir

    cfg = load_config(None, [f"run.run_dir={tmp_path / 'run'}", "learner.step_gamma=0.9"])
    plan = build_plan(cfg, RunDir.create(cfg), model_dir=str(tmp_path))
    argv = {p.name: p.argv for p in plan.all()}
    flag = lambda name, key: argv[name][argv[name].index(key) + 1]  # noqa: E731 - a one-line helper
    assert flag("learner", "--step-gamma") == flag("memory", "--gamma") == "0.9"
    grpo = load_config(None, [f"run.run_dir={tmp_path / 'grpo'}", "learner.step_gamma=0.9", "learner.algo=grpo"])
    argv = {p.name: p.argv for p in build_plan(grpo, RunDir.create(grpo), model_dir=str(tmp_path)).all()}
    assert flag("memory", "--gamma") == "1.0"   # GRPO's episode return is undiscounted


def test_plan_passes_memory_shaping_switch_to_actors(tmp_path):
    from atlasrl.up.plan import build_plan
    from atlasrl.up.rundir import RunDir

    for value, flag in (("true", "--memory-shaping"), ("false", "--no-memory-shaping")):
        cfg = load_config(None, [f"run.run_dir={tmp_path / value}", f"memory.shaping={value}"])
        actor = next(p for p in build_plan(cfg, RunDir.create(cfg), model_dir=str(tmp_path)).all() if p.role == "actor")
        assert flag in actor.argv and "--memory" in actor.argv


def test_bare_prompt_for_the_tiny_model_only_and_the_same_in_training_and_eval(tmp_path):
    from atlasrl.up.evaluation import run_eval  # noqa: F401 - eval builds its argv from the same prompt_flags
    from atlasrl.up.plan import build_plan, prompt_flags
    from atlasrl.up.rundir import RunDir

    cases = (([], True), ([f"model.path={tmp_path}"], False), ([f"model.path={tmp_path}", "actor.bare_prompt=true"], True),
             (["actor.bare_prompt=false"], False))
    for i, (sets, bare) in enumerate(cases):
        cfg = load_config(None, [f"run.run_dir={tmp_path / str(i)}", *sets])
        actor = next(p for p in build_plan(cfg, RunDir.create(cfg), model_dir=str(tmp_path)).all() if p.role == "actor")
        assert ("--bare-prompt" in actor.argv) is bare, sets
        assert ("--bare-prompt" in prompt_flags(cfg)) is bare
        turns = prompt_flags(cfg)[prompt_flags(cfg).index("--context-turns") + 1]
        assert turns == "1" and actor.argv[actor.argv.index("--context-turns") + 1] == turns


def test_actor_backlog_is_one_learner_batch_unless_set(tmp_path):
    from atlasrl.up.plan import build_plan
    from atlasrl.up.rundir import RunDir

    cases = (([], "16"), (["learner.batch_episodes=32"], "32"), (["actor.max_learner_backlog=0"], "0"),
             (["actor.max_learner_backlog=48"], "48"))
    for i, (sets, backlog) in enumerate(cases):
        cfg = load_config(None, [f"run.run_dir={tmp_path / str(i)}", *sets])
        actor = next(p for p in build_plan(cfg, RunDir.create(cfg), model_dir=str(tmp_path)).all() if p.role == "actor")
        assert actor.argv[actor.argv.index("--max-learner-backlog") + 1] == backlog, sets
    with pytest.raises(ConfigError, match=r"actor.max_learner_backlog"):
        load_config(None, [f"run.run_dir={tmp_path / 'bad'}", "actor.max_learner_backlog=-1"])


def test_plan_passes_the_decay_schedules_to_the_learner(tmp_path):
    from atlasrl.up.plan import build_plan
    from atlasrl.up.rundir import RunDir

    cases = (([], ["--lr-final", "0.0001", "--lr-decay-updates", "700"]),
             (["learner.lr_final=null", "learner.entropy_coef_final=0.1", "learner.entropy_decay_updates=400"],
              ["--entropy-coef-final", "0.1", "--entropy-decay-updates", "400"]))
    for i, (sets, flags) in enumerate(cases):
        cfg = load_config(None, [f"run.run_dir={tmp_path / str(i)}", *sets])
        argv = next(p for p in build_plan(cfg, RunDir.create(cfg), model_dir=str(tmp_path)).all() if p.role == "learner").argv
        named = ("--lr-final", "--lr-decay-updates", "--entropy-coef-final", "--entropy-decay-updates")
        got = [a for k, a in enumerate(argv) if a in named or (k and argv[k - 1] in named)]
        assert got == flags, sets


def test_up_reopens_a_run_its_last_launch_stopped(tmp_path):
    """Reusing a run directory resumes it: the coordinator, whose state the last launch left STOPPING, reopens it."""
    from atlasrl.up.plan import build_plan
    from atlasrl.up.rundir import RunDir

    cfg = load_config(None, [f"run.run_dir={tmp_path}"])
    assert "--reopen-stopped" in build_plan(cfg, RunDir.create(cfg), model_dir=str(tmp_path)).coordinator.argv
