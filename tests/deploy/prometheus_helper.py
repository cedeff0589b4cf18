"""A real Prometheus server for tests: the binary from scripts/install-prometheus.sh on a free port.

    prom = find_prometheus()                    # skips (or fails under ATLASRL_REQUIRE_PROMETHEUS=1)
    cfg = scrape_config(tmp_path, targets_file) # docker-free-deploy/prometheus.yml + targets/up.json -> targets_file
    with PrometheusServer(prom, cfg, tmp_path / "tsdb") as p:
        p.query("up")                           # /api/v1/query, raises on a non-success answer
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from atlasrl.up.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docker-free-deploy"
DASHBOARD = DEPLOY / "grafana" / "atlasrl.json"

# Values a Grafana panel would put in for its template variables when run against one atlasrl job.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "5s", "$__range": "5m", "$job": "atlasrl", "$instance": ".*"}


def find_prometheus() -> tuple[str, str]:
    """(prometheus, promtool) paths; skip without them unless ATLASRL_REQUIRE_PROMETHEUS=1 (CI)."""
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    if prom and tool:
        return prom, tool
    why = "prometheus/promtool not installed (scripts/install-prometheus.sh)"
    if os.environ.get("ATLASRL_REQUIRE_PROMETHEUS") == "1":
        pytest.fail(why + " and ATLASRL_REQUIRE_PROMETHEUS=1")
    pytest.skip(why)


def scrape_config(tmp_path: Path, targets_file: Path, scrape_interval: str = "1s") -> Path:
    """docker-free-deploy/prometheus.yml copied into tmp_path with ``targets_file`` linked as targets/up.json
    (docs/monitoring.md's recipe for `atlasrl up`); only the intervals change, so rates fill within seconds."""
    cfg = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    cfg["global"]["scrape_interval"] = cfg["global"]["evaluation_interval"] = scrape_interval
    (job,) = cfg["scrape_configs"]
    assert job["file_sd_configs"][0]["files"] == ["targets/*.json"]  # relative to the config file
    job["file_sd_configs"][0]["refresh_interval"] = scrape_interval
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "up.json").symlink_to(targets_file)
    out = tmp_path / "prometheus.yml"
    out.write_text(yaml.safe_dump(cfg))
    return out


def dashboard_queries(dashboard: dict) -> list[tuple[str, str, str]]:
    """(panel title, refId, PromQL with Grafana variables substituted) for every target of every panel."""
    out = []
    for p in dashboard["panels"]:
        for t in p.get("targets", []):
            expr = t["expr"]
            for var, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
                expr = expr.replace("${" + var[1:] + "}", value).replace(var, value)
            assert "$" not in expr, f"panel {p['title']!r} {t['refId']}: unknown Grafana variable in {expr!r}"
            out.append((p["title"], t["refId"], expr))
    return out


class PrometheusServer:
    def __init__(self, binary: str, config: Path, data_dir: Path):
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / "prometheus.log"
        self.argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
                     f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> PrometheusServer:
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(self.argv, stdout=logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, f"prometheus exited {self.proc.returncode}: {self.log.read_text()[-2000:]}"
            try:
                urllib.request.urlopen(self.url + "/-/ready", timeout=2).read()
                return self
            except OSError:
                assert time.monotonic() < deadline, "prometheus never became ready"
                time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def api(self, path: str, **params) -> dict:
        url = f"{self.url}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            body = urllib.request.urlopen(url, timeout=10).read()
        except urllib.error.HTTPError as e:  # 400/422: a bad query; the body says why
            body = e.read()
        answer = json.loads(body)
        if answer.get("status") != "success":
            raise AssertionError(f"{path} {params}: {answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]

    def query(self, expr: str) -> list[dict]:
        """Instant query now; the result vector (a scalar answer comes back as one unlabelled sample)."""
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [{"metric": {}, "value": data["result"]}]

    def active_targets(self) -> list[dict]:
        return self.api("targets", state="active")["activeTargets"]
