"""Faults during a real `atlasrl up` run (every role a real process, real gRPC, real torch learner).

One run, one fault after another: kill -9 an env server, the memory service, an actor,
the coordinator and the learner. After each the run goes on (the supervisor restarts
the process on the same port; actors reconnect; the coordinator reloads SQLite), the
global counters never go back, and the learner resumes from its last checkpoint.
"""
import asyncio
import json
import signal
import time
import urllib.request

import pytest

from atlasrl.config import load_config
from atlasrl.learner import checkpoint
from atlasrl.up.plan import role_available
from atlasrl.up.run import UpRun

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
ROLES = ("envserver", "memory", "learner", "actor")


async def eventually(check, timeout=240.0, every=0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {check.__name__}"
        await asyncio.sleep(every)


async def faults(run: UpRun) -> None:
    sup, client = run.sup, run.client
    seen_max: dict[str, int] = {}

    async def status():
        st = await client.status(include_dead=True, history_points=0)
        for k, v in st.counters.items():  # global counters never decrease, through every fault
            assert v >= seen_max.get(k, 0), f"counter {k} went back from {seen_max[k]} to {v}"
            seen_max[k] = v
        return st

    async def steps() -> int:
        try:
            return (await status()).counters.get("actor.env_steps", 0)
        except Exception:  # coordinator restarting
            return 0

    async def progress_after(mark: int):
        async def moved():
            return await steps() > mark + 20
        await eventually(moved)

    async def actor_version() -> int:
        st = await status()
        return max((m.policy_version for m in st.members if m.alive and m.name.startswith("actor")), default=-1)

    async def trained():
        return await actor_version() >= 2
    await eventually(trained)  # the learner has published a few versions and the actor applied them

    for name in ("envserver-0", "memory", "actor-0"):
        mark = await steps()
        sup.signal(name, signal.SIGKILL)
        async def restarted(name=name):
            return sup.processes[name].restarts >= 1 and sup.alive(name)
        await eventually(restarted)
        await progress_after(mark)

    # Coordinator: state survives a kill -9 (SQLite); members carry on without re-registering.
    before = await status()
    alive_ids = {m.member_id for m in before.members if m.alive and m.name.startswith("envserver")}
    sup.signal("coordinator", signal.SIGKILL)
    async def back():
        try:
            return await status()
        except Exception:
            return None
    after = await eventually(back)
    assert after.counters["actor.env_steps"] >= before.counters["actor.env_steps"]
    assert after.view.assignment_generation >= before.view.assignment_generation
    assert alive_ids <= {m.member_id for m in after.members if m.alive}
    await progress_after(after.counters["actor.env_steps"])

    # Learner: kill -9, restarted, resumes from its last checkpoint (policy version does not restart at 0).
    # The newest complete checkpoint's version, from its name: with ckpt_every=1 a directory is replaced within
    # a second or so, and the newest one may still be being written.
    newest = checkpoint.latest(run.rd.checkpoints)
    assert newest is not None, "the learner wrote no complete checkpoint"
    saved = int(newest.name.split("-")[1])
    sup.signal("learner", signal.SIGKILL)
    async def learner_back():
        return sup.processes["learner"].restarts >= 1 and sup.alive("learner")
    await eventually(learner_back)
    url = f"http://{run.plan.metrics_targets['learner']}/metrics"

    async def learner_version():
        try:
            text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=2).read().decode())
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("atlasrl_learner_policy_version "):
                return float(line.split()[1]) + 1  # +1: version 0 must read as "serving"
        return None
    version = await eventually(learner_version) - 1
    assert version >= saved, f"learner restarted at version {version}, last checkpoint was {saved}"
    mark = await steps()
    await progress_after(mark)
    async def trains_on():
        v = await learner_version()
        return v is not None and v - 1 > version
    await eventually(trains_on)


@pytest.mark.skipif(not all(role_available(r) for r in ROLES), reason="needs every role's CLI")
async def test_run_survives_kills_of_every_role(tmp_path):
    learner_cfg = tmp_path / "learner.json"
    learner_cfg.write_text(json.dumps({"ckpt_every": 1}))
    cfg = load_config(None, [
        f"run.run_dir={tmp_path / 'run'}", "run.duration_s=900", "run.eval_episodes=0", "run.display=false",
        "run.stop_timeout_s=10", "run.max_restarts=3", "coordinator.lease_ttl_s=3", "coordinator.max_staleness=2",
        "actor.num_envs=4", "actor.group_size=2", "actor.nice=0", "learner.batch_episodes=4", f"learner.args=[--config, '{learner_cfg}']",
    ])
    summary = await UpRun(cfg, fault_hook=faults).run()
    assert summary.get("stop_reason") == "fault script finished", summary
    assert all(summary["restarts"][n] >= 1 for n in ("envserver-0", "memory", "actor-0", "coordinator", "learner")), summary
    assert "error" not in summary
