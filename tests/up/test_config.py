"""The run config: file + dotted overrides, errors that name the key, round trip of the resolved config."""
import subprocess
import sys
from pathlib import Path

import pytest

from atlasrl.config import ConfigError, dump_config, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_file_then_overrides(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('[actor]\nnum_envs = 16\ngroup_size = 8\nenv_config = {text_mode = "grid"}\n[envserver]\nworkers = 3\n')
    cfg = load_config(f, ["actor.num_envs=24", "run.display=false", "learner.lr=1e-5"])
    assert (cfg.actor.num_envs, cfg.actor.group_size, cfg.envserver.workers) == (24, 8, 3)
    assert cfg.actor.env_config == {"text_mode": "grid"} and cfg.run.display is False
    assert cfg.learner.lr == 1e-5 and cfg.learner.algo == "gigpo"   # the preset's, under the file


def test_yaml_and_round_trip(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("run:\n  duration_s: 30\nprocesses:\n  actors: 2\n")
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
    (["coordinator.max_staleness=3"], "must agree"),
    (["learner.batch_episodes=32", "actor.max_learner_backlog=16"], "actors would wait for a batch"),
    (["nosection"], "expected section.key=value"),
    (["model.max_pixels=38416"], "model.max_pixels sets the tiny VL model's image budget: it needs model.arch=qwen2.5-vl"),
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
    (tmp_path / "x.ini").write_text("{}")
    with pytest.raises(ConfigError, match=r"use .toml"):
        load_config(tmp_path / "x.ini")
    with pytest.raises(ConfigError, match=r"unknown preset 'nope'.*frozenlake-tiny"):
        load_config(preset="nope")


def test_cli_config_show_and_error_exit():
    code = ("import typer, sys; from atlasrl.cli import config; app = typer.Typer(); config.register(app); "
            "app.command('noop')(lambda: None); app()")
    ok = subprocess.run([sys.executable, "-c", code, "config", "show", "--set", "actor.num_envs=12", "--env", "sokoban"],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert "num_envs: 12" in ok.stdout and "env_id: sokoban" in ok.stdout
    bad = subprocess.run([sys.executable, "-c", code, "config", "show", "--set", "actor.group_size=-2"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "actor.group_size" in bad.stderr


def test_importable_without_torch():
    r = subprocess.run([sys.executable, "-c", "import sys, atlasrl.config, atlasrl.coordinator.server, atlasrl.clients.coordinator;"
                        " assert 'torch' not in sys.modules"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def plan_files(tmp_path, name, *sets) -> dict:
    """{process name: its <name>.yaml as a dict} of the plan `atlasrl up` would start with these overrides."""
    import yaml

    from atlasrl.up.plan import build_plan
    from atlasrl.up.rundir import RunDir

    cfg = load_config(None, [f"run.run_dir={tmp_path / name}", *sets])
    plan = build_plan(cfg, RunDir.create(cfg), model_dir=str(tmp_path))
    for p in plan.all():   # each process is started with exactly its file
        assert p.argv[-2:] == ["--config", str(plan.config_files[p.name])], p.argv
    return {n: yaml.safe_load(f.read_text()) for n, f in plan.config_files.items()}


def test_plan_gives_memory_shaping_the_learners_step_discount(tmp_path):
    """Shaping telescopes in GiGPO's step returns only when both use one discount."""
    files = plan_files(tmp_path, "gigpo", "learner.step_gamma=0.9")
    assert files["learner"]["step_gamma"] == files["memory"]["shaping"]["gamma"] == 0.9
    files = plan_files(tmp_path, "grpo", "learner.step_gamma=0.9", "learner.algo=grpo")
    assert files["memory"]["shaping"]["gamma"] == 1.0   # GRPO's episode return is undiscounted


def test_plan_wires_every_process(tmp_path):
    files = plan_files(tmp_path, "run", "processes.envservers=2", "processes.actors=2", "actor.memory_shaping=false")
    assert set(files) == {"coordinator", "envserver-0", "envserver-1", "memory", "learner", "actor-0", "actor-1"}
    envs = [f"{f['host']}:{f['port']}" for n, f in files.items() if n.startswith("envserver")]
    learner = f"{files['learner']['host']}:{files['learner']['port']}"
    coord = f"{files['coordinator']['server']['host']}:{files['coordinator']['server']['port']}"
    for i in range(2):
        a = files[f"actor-{i}"]
        assert a["envs"] == envs and a["learner"] == learner and a["coordinator"] == coord and a["actor_id"] == f"actor-{i}"
        assert a["memory_shaping"] is False and a["spool_dir"] == str(tmp_path / "run" / "spool")
        assert a["seed_start"] == i * 1_000_000
    assert all(f.get("coordinator", coord) == coord for n, f in files.items() if n != "coordinator")
    ports = [f["port"] for n, f in files.items() if n != "coordinator" and n != "memory"]
    assert len(set(ports)) == len(ports)
    assert files["coordinator"]["reopen_stopped"] is True   # reusing a run directory is a new launch


def test_fixed_ports_come_from_the_role_sections(tmp_path):
    files = plan_files(tmp_path, "fixed", "processes.fixed_ports=true", "processes.envservers=2", "envserver.port=61000",
                       "envserver.metrics_port=61100", "learner.port=61200")
    assert [files[f"envserver-{i}"]["port"] for i in range(2)] == [61000, 61001]
    assert [files[f"envserver-{i}"]["metrics_port"] for i in range(2)] == [61100, 61101]
    assert files["learner"]["port"] == 61200 and files["coordinator"]["server"]["port"] == 50050
    free = plan_files(tmp_path, "free", "envserver.port=61000")
    assert free["envserver-0"]["port"] != 61000   # by default every process takes a free port


def test_bare_prompt_for_the_tiny_model_only_and_the_same_in_training_and_eval(tmp_path):
    import yaml

    from atlasrl.up.plan import eval_file
    from atlasrl.up.rundir import RunDir

    cases = (([], True), ([f"model.path={tmp_path}"], False), ([f"model.path={tmp_path}", "actor.bare_prompt=true"], True),
             (["actor.bare_prompt=false"], False))
    for i, (sets, bare) in enumerate(cases):
        actor = plan_files(tmp_path, str(i), *sets)["actor-0"]
        cfg = load_config(None, [f"run.run_dir={tmp_path / str(i)}", *sets])
        ev = yaml.safe_load(eval_file(cfg, RunDir(tmp_path / str(i)), "after", tmp_path, ["x:1"], tmp_path / "o").read_text())
        assert actor["bare_prompt"] is bare and ev["bare_prompt"] is bare, sets
        for key in ("context_turns", "action_mode", "env_id", "env_config", "engine", "system_prompt", "context_images"):
            assert ev[key] == actor[key], key   # the eval builds the prompts training used
        assert actor["context_turns"] == 1 and ev["seed_start"] == cfg.run.eval_seed_start


def test_actor_backlog_is_one_learner_batch_unless_set(tmp_path):
    for i, (sets, backlog) in enumerate(((["learner.batch_episodes=32"], None), (["actor.max_learner_backlog=0"], 0),
                                         (["actor.max_learner_backlog=48"], 48))):
        assert plan_files(tmp_path, str(i), *sets)["actor-0"]["max_learner_backlog"] == backlog, sets
    with pytest.raises(ConfigError, match=r"actor.max_learner_backlog"):
        load_config(None, [f"run.run_dir={tmp_path / 'bad'}", "actor.max_learner_backlog=-1"])


def test_plan_passes_the_decay_schedules_to_the_learner(tmp_path):
    learner = plan_files(tmp_path, "a")["learner"]
    assert (learner["lr_final"], learner["lr_decay_updates"], learner["entropy_coef_final"]) == (1e-4, 700, None)
    learner = plan_files(tmp_path, "b", "learner.lr_final=null", "learner.entropy_coef_final=0.1",
                         "learner.entropy_decay_updates=400")["learner"]
    assert (learner["lr_final"], learner["entropy_coef_final"], learner["entropy_decay_updates"]) == (None, 0.1, 400)


def test_vllm_actors_start_from_the_vllm_venv(tmp_path, monkeypatch):
    """actor.engine=vllm: up starts the actor (and its held-out eval) with the interpreter that has vLLM."""
    import sys

    from atlasrl.up import plan as plan_mod
    from atlasrl.up.supervisor import RoleFailed

    fake = tmp_path / "venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text("")
    monkeypatch.setattr(plan_mod.importlib.util, "find_spec", lambda name: None if name == "vllm" else object())
    monkeypatch.setenv("ATLASRL_VLLM_PYTHON", str(fake))
    cfg = load_config(None, [f"run.run_dir={tmp_path / 'run'}", "actor.engine=vllm"])
    procs = {p.name: p for p in plan_mod.build_plan(cfg, plan_mod.RunDir.create(cfg), model_dir=str(tmp_path)).all()}
    assert procs["actor-0"].argv[0] == str(fake)
    assert all(p.argv[0] == sys.executable for n, p in procs.items() if n != "actor-0")
    monkeypatch.setenv("ATLASRL_VLLM_PYTHON", str(tmp_path / "missing" / "python"))
    with pytest.raises(RoleFailed, match=r"actor\.engine=vllm, but vLLM is installed neither here nor at"):
        plan_mod.build_plan(cfg, plan_mod.RunDir.create(cfg), model_dir=str(tmp_path))


def test_action_head_sides_agree_and_take_the_run_seed():
    import pydantic

    from atlasrl.config.schema import RunConfig

    cfg = load_config(preset="reach-flow", overrides=["run.seed=2"])
    assert cfg.actor.action_head == cfg.learner.action_head and cfg.actor.action_head.init_seed == 2
    one = load_config(preset="reach-flow", overrides=["actor.action_head.init_seed=5"])
    assert one.learner.action_head.init_seed == 5       # the preset's YAML anchor: one dict, both sides
    data = load_config(preset="reach-flow").model_dump(mode="json")
    data["learner"]["action_head"]["micro_batch"] = 16  # the learner's micro-batch and the actor's refinement
    data["actor"]["action_head"]["refine_threshold"] = 0.5   # are one side's business
    RunConfig.model_validate(data)
    data["learner"]["action_head"].update(width=32, noise_std=0.5)
    with pytest.raises(pydantic.ValidationError, match="differ in noise_std, width"):
        RunConfig.model_validate(data)
    data["learner"]["action_head"] = None
    with pytest.raises(pydantic.ValidationError, match="go together"):
        RunConfig.model_validate(data)


async def test_up_builds_the_tiny_vl_model_with_its_image_budget(tmp_path, monkeypatch):
    """model.max_pixels reaches the tiny model's processor, so a 196 px frame keeps one token per 28-px cell."""
    from atlasrl.models.load import load_image_processor
    from atlasrl.up.run import ensure_model
    from atlasrl.up.rundir import RunDir

    monkeypatch.setenv("ATLASRL_CACHE", str(tmp_path / "cache"))
    cfg = load_config(None, ["model.arch=qwen2.5-vl", "model.max_pixels=38416", f"run.runs_dir={tmp_path}"])
    path = await ensure_model(cfg, RunDir.create(cfg))
    processor = load_image_processor(path)
    assert processor.size["longest_edge"] == 196 * 196 and str(path).startswith(str(tmp_path / "cache"))
