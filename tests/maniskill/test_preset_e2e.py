"""`atlasrl up --preset maniskill-pickcube`, shortened: every role a process, the tiny Qwen2.5-VL acting on
PickCube-v1 through the env server (software Vulkan on a CPU host), at least one learner update, and the held-out
eval before and after training reading the env's own success."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.maniskill, pytest.mark.timeout(1500)]
ROOT = Path(__file__).resolve().parents[2]


def test_maniskill_pickcube_preset_trains_and_evaluates(maniskill_ready, tmp_path):
    run_dir = tmp_path / "run"
    # The preset's settings, with short episodes (3 decisions) and answers (8 tokens: a random-weights model writes
    # no valid chunk either way; its turns are the env's hold) so that a bounded run reaches an update on 2 cores.
    r = subprocess.run([sys.executable, "-m", "atlasrl.up.launch", "up", "--preset", "maniskill-pickcube",
                        "--max-steps", "24", "--duration", "600", "--run-dir", str(run_dir), "--no-display",
                        "--set", "run.eval_episodes=2", "--set", "actor.max_turns=3", "--set", "actor.max_new_tokens=8"],
                       capture_output=True, text=True, cwd=ROOT, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last["error"] is None and last["policy_version"] >= 1, last          # the learner updated the policy
    assert last["eval_before"] is not None and last["eval_after"] is not None, last
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["actor"]["env_id"] == "maniskill:PickCube-v1" and config["actor"]["env_config"]["execute_steps"] == "2"
    for phase in ("before", "after"):
        records = [json.loads(line) for line in (run_dir / "eval" / f"{phase}.jsonl").read_text().splitlines()]
        assert len(records) == 2 and all(rec["layout_key"].startswith("PickCube-v1|cube:") for rec in records)
        assert all(rec["turns"] == 3 and rec["success"] is False for rec in records)   # env success, read per episode
    summary = json.loads((run_dir / "summary.json").read_text())
    assert all(v == 0 for v in summary["restarts"].values()), summary["events"]
    assert summary["accounting"]["balanced"], summary["accounting"]
