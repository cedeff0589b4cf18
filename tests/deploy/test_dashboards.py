"""Prometheus config and Grafana dashboard: files are fresh, and every metric a panel queries is one a role defines.

The defined names come from the roles' real metric classes registered on real Prometheus
registries (the same code paths that serve /metrics), not from a hand-kept list.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from atlasrl.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docker-free-deploy"


def role_registries(tmp_path) -> list[Metrics]:
    """One Metrics registry per role, filled by the role's own metric classes."""
    from atlasrl.coordinator.config import CoordinatorConfig
    from atlasrl.coordinator.service import CoordinatorServicer
    from atlasrl.coordinator.state import StateStore

    registries = []
    m = Metrics("coordinator")
    CoordinatorServicer(CoordinatorConfig(state_dir=tmp_path), StateStore(tmp_path / "c.sqlite"), m)
    registries.append(m)
    for module, cls in (("atlasrl.learner.metrics", "LearnerMetrics"), ("atlasrl.actors.metrics", "ActorMetrics"),
                        ("atlasrl.envserver.sessions", "EnvMetrics"), ("atlasrl.memory.service", "MemoryMetrics")):
        mod = pytest.importorskip(module)
        m = Metrics(cls)
        getattr(mod, cls)(m)
        registries.append(m)
    return registries


def defined_metric_names(tmp_path) -> set[str]:
    names = set()
    for m in role_registries(tmp_path):
        for family in text_string_to_metric_families(m.exposition()):
            names.add(family.name)
            if family.type == "counter":
                names.add(family.name + "_total")
            if family.type == "histogram":
                names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
    return names


def test_dashboard_is_fresh_and_queries_only_defined_metrics(tmp_path):
    r = subprocess.run([sys.executable, str(DEPLOY / "grafana" / "build_dashboard.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    dash = json.loads((DEPLOY / "grafana" / "atlasrl.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = {name for e in exprs for name in re.findall(r"\batlasrl_[a-z0-9_]+", e)}
    defined = defined_metric_names(tmp_path)
    assert not used - defined, f"dashboard queries metrics no role defines: {sorted(used - defined)}"
    titles = " ".join(p["title"] for p in dash["panels"])
    for topic in ("Throughput", "Success", "Loss", "KL", "Staleness", "p99", "Errors"):
        assert topic.lower() in titles.lower(), topic
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_prometheus_config_scrapes_file_sd_targets():
    cfg = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    job = cfg["scrape_configs"][0]
    assert job["job_name"] == "atlasrl" and job["file_sd_configs"][0]["files"] == ["targets/*.json"]
    assert (DEPLOY / "targets").is_dir()


def test_metric_labels_do_not_collide_with_target_labels(tmp_path):
    """role and name are the scrape targets' labels (prometheus-targets.json, deploy.py targets); a metric
    label of the same name would be renamed exported_role / exported_name by Prometheus."""
    targets = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert targets["scrape_configs"][0]["relabel_configs"][0]["source_labels"] == ["name"]
    reserved = {"role", "name", "instance", "job"}
    clashes = []
    for m in role_registries(tmp_path):
        for collector, names in m.registry._collector_to_names.items():  # every metric, with or without children yet
            clashes += [(name, label) for name in names for label in getattr(collector, "_labelnames", ()) if label in reserved]
    assert not clashes, f"metric labels that clash with target labels: {sorted(set(clashes))}"
