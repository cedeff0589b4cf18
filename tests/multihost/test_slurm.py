"""`deploy.py INVENTORY slurm` submitted for real: a heterogeneous batch job on a Slurm cluster of Debian's slurm-wlm
(munged, slurmctld and four slurmds started here, tests/multihost/slurm_cluster.py), the tiny model on FrozenLake
with mTLS and role tokens made by the job itself.

Het components: 0 coordinator + memory, 1 learner, 2 env server, 3 actor, each on its own Slurm node (n1..n4, one
loopback address each). The learner stops after ``max_updates``; the job then stops the other steps, prints the
episode accounting and ends COMPLETED; nothing of it is left running. Bounded: a 5-minute job time limit, every
wait has a deadline, and the daemons and their directory are removed in the fixture's finally and at exit.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from slurm_cluster import SlurmCluster, available

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docker-free-deploy" / "deploy.py"
UPDATES = 3

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    why = available()
    if why:
        if os.environ.get("ATLASRL_REQUIRE_SLURM"):
            pytest.fail(f"Slurm test required (ATLASRL_REQUIRE_SLURM) but {why}")
        pytest.skip(why)
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


def test_heterogeneous_job_trains_and_completes(slurm, tmp_path):
    from atlasrl.models.tiny import tiny_model_path

    inv = {
        "name": "sl", "remote_dir": str(tmp_path), "model": str(tiny_model_path()), "slurm": ["--time=5"],
        "config": {
            "coordinator": {"lease_ttl_s": 5.0, "max_staleness": 2},
            "envserver": {"envs": ["frozenlake"], "workers": 0, "max_envs": 32},
            "learner": {"algo": "gigpo", "lr": 1.0e-3, "batch_episodes": 8, "max_staleness": 2, "idle_poll_s": 0.5,
                        "entropy_coef": 0.3, "max_updates": UPDATES},
            "actor": {"num_envs": 8, "group_size": 4, "memory_hints": "none", "max_turns": 24},
        },
        "hosts": {   # ssh/address are not used by `slurm`: Slurm hands out the nodes
            "ctl": {"venv": sys.prefix, "roles": {"coordinator": {"port": 50050, "metrics_port": 9100},
                                                  "memory": {"port": 50055, "metrics_port": 9101}}},
            "gpu": {"venv": sys.prefix, "roles": {"learner": {"port": 50052, "metrics_port": 9102}}},
            "env": {"venv": sys.prefix, "roles": {"envserver": {"port": 50060, "metrics_port": 9110}}},
            "act": {"venv": sys.prefix, "roles": {"actor": {"port": 50070, "metrics_port": 9120}}},
        },
    }
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    script = tmp_path / "job.sbatch"
    r = subprocess.run([sys.executable, str(DEPLOY), str(path), "slurm", "--out", str(script)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr

    t0 = time.monotonic()
    job = slurm.sbatch(script, cwd=tmp_path)
    state = slurm.wait_job(job, timeout=300)
    wall_s = time.monotonic() - t0
    run = tmp_path / "runs" / f"sl-{job}"
    out = (tmp_path / f"sl-{job}.out").read_text()
    logs = {p.name: p.read_text(errors="replace") for p in sorted((run / "logs").glob("*.log"))}
    why = f"job {job}: {state}\n--- batch output\n{out[-3000:]}\n" + "".join(
        f"--- {n}\n{t[-2500:]}\n" for n, t in logs.items()) + slurm.logs(15)
    assert state == "COMPLETED", why
    left = slurm.wait_no_steps(30)   # slurmstepds end once their step's processes are reaped
    assert not left, "processes of the job left:\n" + "\n".join(left) + "\n" + why

    # one het component per kind of host, each on its own node
    comp = [line for line in slurm.jobcomp.read_text().splitlines() if f"HetJobId={job}" in line]
    assert sorted(re.search(r"NodeList=(\S+)", c).group(1) for c in comp) == ["n1", "n2", "n3", "n4"], comp
    assert all("JobState=COMPLETED" in c for c in comp), comp
    # the learner trained max_updates updates on the actor's episodes, through mTLS + tokens it never saw plain
    ledger = run / "state" / "checkpoints" / "ledger.sqlite"
    assert ledger.is_file(), why
    with sqlite3.connect(ledger) as db:
        version = int(db.execute("select value from meta where key='published_version'").fetchone()[0])
    assert version == UPDATES, why
    assert (run / "pki" / "ca.pem").is_file() and "--insecure" not in script.read_text()
    for name in ("coordinator-0.log", "memory-0.log", "learner-0.log", "envserver-0.log", "actor-0.log"):
        assert name in logs, why
    assert "Traceback" not in logs["learner-0.log"], why
    assert "balanced: generated = trained + refused + lost + waiting + unsent" in out, why
    trained = int(re.search(r"trained +(\d+)", out).group(1))
    assert trained == UPDATES * 8, why   # batch_episodes 8
    # stopped component by component, every task exiting 0 on SIGTERM (srun reports any other exit)
    order = [int(k) for k in re.findall(r"stopping het group (\d)", out)]
    assert order == [3, 1, 2, 0] and "srun: error" not in out, why
    times = [re.search(r"StartTime=(\S+) EndTime=(\S+)", c).groups() for c in comp]
    print("SLURM " + json.dumps({"submit_to_end_s": round(wall_s, 1), "job_start_end": times[0], "trained": trained}),
          flush=True)
