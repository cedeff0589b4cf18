"""GPUs per role under `atlasrl up` (issue #15 item 5): the 8-GPU preset validates, and the plan gives every
process its own GPUs through CUDA_VISIBLE_DEVICES (learner ranks, each actor's tensor-parallel engine, env servers
none), disjoint; a CPU run sets nothing."""
import pytest
import yaml

from atlasrl.config import load_config
from atlasrl.config.loader import ConfigError
from atlasrl.up.plan import build_plan, eval_file
from atlasrl.up.rundir import RunDir

PRESET = "gpu-8x-frozenlake-vl"


def plan_for(cfg, tmp_path):
    cfg.run.run_dir = tmp_path / "run"
    return build_plan(cfg, RunDir.create(cfg), model_dir=str(cfg.model.path or tmp_path))


def visible(process) -> set[str]:
    value = process.env["CUDA_VISIBLE_DEVICES"]          # every process is told, "" = no GPU
    return {d for d in value.split(",") if d}


def test_the_8_gpu_preset_gives_each_process_its_own_gpus(tmp_path):
    cfg = load_config(preset=PRESET)
    plan = plan_for(cfg, tmp_path)
    gpus = {p.name: visible(p) for p in plan.all()}
    assert gpus["learner"] == {"0", "1", "2", "3"}
    assert gpus["actor-0"] == {"4", "5"} and gpus["actor-1"] == {"6", "7"}
    assert all(not gpus[n] for n in gpus if n.startswith(("envserver", "coordinator", "memory")))
    owned = [g for g in gpus.values() if g]
    assert sum(len(g) for g in owned) == len(set().union(*owned)) == 8, gpus      # disjoint, all 8 used
    # each process's own file says the same (what `atlasrl <role> --config` reads and applies)
    learner = yaml.safe_load(plan.config_files["learner"].read_text())
    assert (learner["devices"], learner["nproc"]) == (["0", "1", "2", "3"], 4)
    for i, group in enumerate((["4", "5"], ["6", "7"])):
        actor = yaml.safe_load(plan.config_files[f"actor-{i}"].read_text())
        assert actor["devices"] == group and actor["tensor_parallel_size"] == 2 and actor["engine"] == "vllm"
    ev = yaml.safe_load(eval_file(cfg, RunDir(tmp_path / "run"), "before", tmp_path, ["x:1"], tmp_path / "o").read_text())
    assert ev["devices"] == ["4", "5"]     # the eval runs while the actors do not


def test_a_cpu_run_sets_no_gpu_variable(tmp_path):
    plan = plan_for(load_config(), tmp_path)
    assert all("CUDA_VISIBLE_DEVICES" not in p.env for p in plan.all())
    assert yaml.safe_load(plan.config_files["actor-0"].read_text())["devices"] == []


@pytest.mark.parametrize("overrides, key", [
    (["processes.actor_devices=[[4, 5], [5, 6]]"], "GPU 5 is given to actor 0 and actor 1"),
    (["processes.actor_devices=[[4, 5]]"], "processes.actors"),
    (["processes.actor_devices=[[4], [6]]"], "processes.actor_devices[0] has 1 GPUs"),
    (["actor.devices=[4, 5]"], "processes.actor_devices and actor.devices are both set"),
    (["learner.devices=[0, 1]"], "nproc (4) must equal"),
    (["learner.devices=[0, 0, 1, 2]"], "devices: GPU 0 listed twice"),
])
def test_bad_gpu_assignments_are_refused_naming_the_key(overrides, key):
    with pytest.raises(ConfigError) as e:
        load_config(preset=PRESET, overrides=overrides)
    assert key in str(e.value)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal on a host without CUDA")
def test_the_learner_command_refuses_gpus_this_host_lacks(tmp_path):
    from typer.testing import CliRunner

    from atlasrl.cli.main import app, build
    from atlasrl.models.tiny import tiny_model_path

    build()
    r = CliRunner().invoke(app, ["learner", "--model", str(tiny_model_path("qwen2")), "--ckpt-dir", str(tmp_path),
                                 "--devices", "0"], terminal_width=200)
    assert r.exit_code == 2 and "learner.devices=0: this host has no CUDA GPU" in r.output, r.output
