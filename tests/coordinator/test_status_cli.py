"""`atlasrl status` against a live coordinator: the table (roles, health, versions, throughput, errors), --json, --pause."""
import asyncio
import json
import subprocess
import sys
from pathlib import Path

from atlasrl.clients.coordinator import RoleRegistration
from atlasrl.v1 import coordinator_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]


def status_cli(*args):
    return subprocess.run([sys.executable, "-m", "atlasrl.up.launch", "status", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


async def test_status_table_json_and_pause(coordinator):
    learner = await RoleRegistration(coordinator.address, role="learner", name="learner", address="127.0.0.1:7100", heartbeat_s=0.05).start()
    actor = await RoleRegistration(coordinator.address, role="actor", name="actor-0", capacity=4, heartbeat_s=0.05).start()
    learner.policy_version = 7
    actor.policy_version = 5
    actor.counters.update({"env_steps": 1234, "episodes": 40, "successes": 10})
    actor.report_error("env server 127.0.0.1:7001 unreachable")
    await asyncio.sleep(0.5)

    r = await asyncio.to_thread(status_cli, "--coordinator", coordinator.address)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "run running" in out and "policy v7" in out
    assert "env steps 1,234" in out and "episodes 40" in out and "success 0.25" in out
    row = next(line for line in out.splitlines() if "actor-0" in line)
    assert "errors" in row and " 2 " in row and "1,234 env_steps" in row and "unreachable" in row  # lag 7 - 5 = 2

    r = await asyncio.to_thread(status_cli, "--coordinator", coordinator.address, "--json", "--pause")
    data = json.loads(r.stdout)
    assert data["view"]["runState"] == "RUN_STATE_PAUSED" and data["counters"]["actor.env_steps"] == "1234"
    await actor.wait_for(lambda v: v.run_state == pb.RUN_STATE_PAUSED, timeout=5)

    bad = await asyncio.to_thread(status_cli, "--coordinator", "127.0.0.1:1")
    assert bad.returncode == 1 and "UNAVAILABLE" in bad.stderr
    await actor.close()
    await learner.close()
