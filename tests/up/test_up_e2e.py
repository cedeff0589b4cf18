"""A short, bounded real `atlasrl up` through the CLI: every role a process; run directory contents; clean exit."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from atlasrl.up.plan import role_available

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not all(role_available(r) for r in ("envserver", "memory", "learner", "actor")), reason="needs every role")
def test_bounded_up_writes_the_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "atlasrl.up.launch", "up", "--max-steps", "300", "--duration", "400",
                        "--run-dir", str(run_dir), "--no-display", "--set", "run.eval_episodes=4",
                        "--set", "actor.num_envs=4", "--set", "actor.group_size=2", "--set", "learner.batch_episodes=4"],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert "max_env_steps" in last["stop_reason"] and last["counters"]["actor.env_steps"] >= 300
    assert last["eval_before"] is not None and 0.0 <= last["eval_before"] <= 1.0
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["run"]["max_env_steps"] == 300
    logs = {p.stem for p in (run_dir / "logs").glob("*.log")}
    assert {"coordinator", "envserver-0", "memory", "learner", "actor-0", "eval-before"} <= logs
    summary = json.loads((run_dir / "summary.json").read_text())
    assert all(v == 0 for v in summary["restarts"].values()), summary["events"]
    assert (run_dir / "coordinator" / "coordinator.sqlite").is_file()
    targets = json.loads((run_dir / "prometheus-targets.json").read_text())
    assert {t["labels"]["role"] for t in targets} == {"coordinator", "envserver", "memory", "learner", "actor"}
    assert len((run_dir / "eval" / "before.jsonl").read_text().splitlines()) == 4
    assert (run_dir / "plots" / "learning.png").stat().st_size > 1000
    assert (run_dir / "plots" / "atlas-frozenlake.png").stat().st_size > 1000


@pytest.mark.skipif(not (ROOT / ".venv-vllm" / "bin" / "python").is_file(), reason="needs .venv-vllm (scripts/install.sh --vllm)")
def test_up_with_vllm_actors_trains(tmp_path):
    """`atlasrl up --set actor.engine=vllm` from the main venv: the actor and the eval run vLLM from .venv-vllm,
    the learner trains on their episodes and every episode is accounted for."""
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is importable here: nothing to hand over to .venv-vllm")
    run_dir = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "atlasrl.up.launch", "up", "--max-steps", "400", "--duration", "300",
                        "--run-dir", str(run_dir), "--no-display", "--set", "actor.engine=vllm",
                        "--set", "run.eval_episodes=4", "--set", "actor.num_envs=4", "--set", "actor.group_size=2",
                        "--set", "learner.batch_episodes=4"], capture_output=True, text=True, cwd=ROOT, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last["policy_version"] >= 1 and last["eval_before"] is not None and last["eval_after"] is not None, last
    processes = json.loads((run_dir / "processes.json").read_text())
    assert processes["actor-0"][0] == str(ROOT / ".venv-vllm" / "bin" / "python")
    assert "vllm" in (run_dir / "logs" / "actor-0.log").read_text().lower()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["accounting"]["balanced"], summary["accounting"]
