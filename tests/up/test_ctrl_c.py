"""Ctrl-C on a real `atlasrl up`: every child gets SIGTERM, the command exits cleanly, no process is left behind."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from atlasrl.up.plan import role_available

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not all(role_available(r) for r in ("envserver", "memory", "learner", "actor")), reason="needs every role")
def test_sigint_stops_everything(tmp_path):
    run_dir = tmp_path / "run"
    up = subprocess.Popen([sys.executable, "-m", "atlasrl.up.launch", "up", "--run-dir", str(run_dir), "--no-display",
                           "--set", "run.eval_episodes=0", "--set", "actor.num_envs=4", "--set", "actor.group_size=2"],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 600
        while not (run_dir / "logs" / "actor-0.log").exists() or "serving" not in (run_dir / "logs" / "actor-0.log").read_text():
            assert up.poll() is None, up.stdout.read()
            assert time.monotonic() < deadline, "actor never started"
            time.sleep(1)
        children = psutil.Process(up.pid).children(recursive=True)
        roles = {json.dumps(c.cmdline()) for c in children}
        assert any("coordinator" in r for r in roles) and any("learner" in r for r in roles)
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=300)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, out[-3000:]
    assert "interrupted: stopping cleanly" in out
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "interrupted"
    assert "killing its process group" not in " ".join(summary["events"])  # every role stopped on SIGTERM
