"""The dashboards load the metrics: a real Prometheus scrapes a real `atlasrl up` run.

`atlasrl up` (every role a real process, real learner) writes <run_dir>/prometheus-targets.json;
a real `prometheus` binary scrapes it with docker-free-deploy/prometheus.yml, the file linked
into targets/ as docs/monitoring.md says (only the intervals shortened). Every PromQL expression of
every panel of the Grafana dashboard then goes through /api/v1/query: each must be accepted
and, once the learner has trained, return data (throughput, success, loss/KL, staleness,
latencies; error panels read 0 rather than "No data"). Skips without the binary unless
ATLASRL_REQUIRE_PROMETHEUS=1 (.ci/run sets it).
"""
import asyncio
import json
import subprocess
import time

import pytest
from prometheus_helper import DASHBOARD, DEPLOY, PrometheusServer, dashboard_queries, find_prometheus, scrape_config

from atlasrl.config import load_config
from atlasrl.up.plan import role_available
from atlasrl.up.run import UpRun

ROLES = ("coordinator", "envserver", "memory", "learner", "actor")


def test_promtool_accepts_the_shipped_config():
    _, promtool = find_prometheus()
    r = subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus.yml")], capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS" in r.stdout + r.stderr, r.stdout + r.stderr


async def eventually(check, timeout=240.0, every=1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {check.__name__}"
        await asyncio.sleep(every)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(not all(role_available(r) for r in ROLES[1:]), reason="needs every role's CLI")
async def test_every_dashboard_query_runs_on_a_live_run(tmp_path):
    prom_bin, promtool = find_prometheus()
    queries = dashboard_queries(json.loads(DASHBOARD.read_text()))
    seen: dict = {}

    async def check(run: UpRun) -> None:
        targets_file = run.rd.root / "prometheus-targets.json"
        config = scrape_config(tmp_path, targets_file)
        r = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        with PrometheusServer(prom_bin, config, tmp_path / "tsdb") as prom:
            expected = {t["labels"]["name"] for t in json.loads(targets_file.read_text())}

            async def targets_up():
                active = await asyncio.to_thread(prom.active_targets)
                up = {t["labels"]["instance"] for t in active if t["health"] == "up"}
                seen["targets"] = active
                return up == expected and all({"role", "name"} <= t["labels"].keys() for t in active)
            await eventually(targets_up)

            async def trained():  # a learner update, published and scraped, a few scrapes apart
                return await asyncio.to_thread(prom.query, "atlasrl_learner_updates_total > 0 and atlasrl_learner_policy_version > 0")
            await eventually(trained)

            async def panels_filled():
                results = {q: await asyncio.to_thread(prom.query, q[2]) for q in queries}  # raises on a rejected query
                seen["results"] = results
                seen["empty"] = [q for q, r in results.items() if not r]
                return not seen["empty"]
            try:
                await eventually(panels_filled, timeout=120)
            except AssertionError:
                raise AssertionError("queries without data:\n" + "\n".join(map(str, seen["empty"]))) from None

    cfg = load_config(None, [
        f"run.run_dir={tmp_path / 'run'}", "run.duration_s=500", "run.eval_episodes=0", "run.display=false",
        "run.stop_timeout_s=10", "actor.num_envs=4", "actor.group_size=2", "actor.nice=0", "learner.batch_episodes=4",
    ])
    summary = await UpRun(cfg, fault_hook=check).run()
    assert summary.get("stop_reason") == "fault script finished", summary
    assert "error" not in summary, summary
    print("\n" + "\n".join(f"{len(r):3d} series  {t} [{ref}]  {e}  {[x['metric'] for x in r][:3]}" for (t, ref, e), r in seen["results"].items()))
    # A metric label named like a target label (role, name) would be renamed exported_* by the scrape
    # and the dashboard's "by (role)" / {{name}} would show the scraped process instead.
    for (title, ref, _expr), result in seen["results"].items():
        for series in result:
            assert not {"exported_role", "exported_name"} & series["metric"].keys(), (title, ref, series)
