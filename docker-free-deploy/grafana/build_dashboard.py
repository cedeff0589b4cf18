#!/usr/bin/env python3
"""Generate grafana/atlasrl.json (the Grafana dashboard) from the panel list below.

    python docker-free-deploy/grafana/build_dashboard.py          # rewrite atlasrl.json
    python docker-free-deploy/grafana/build_dashboard.py --check  # exit 1 if atlasrl.json is stale

Rows: throughput, success, learner, staleness, latencies, errors, membership. Every
expression uses atlasrl_* metric names; tests/deploy checks each one is defined by a role,
and tests/deploy/test_prometheus_live.py runs every one through a real Prometheus scraping a
live `atlasrl up`. `role` and `name` are the scrape targets' labels (the process scraped);
error panels fall back to 0 (`or on (...) 0 * ...`) so a healthy run reads 0, not "No data".
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).with_name("atlasrl.json")
W, H = 12, 8  # panel width (of 24) and height
# Status codes that answer the caller's request as it was (bad input, an unknown name such as a family the
# memory has not seen yet, a stale version, no access, cancelled by the caller): the service is working.
CALLER_CODES = "INVALID_ARGUMENT|NOT_FOUND|ALREADY_EXISTS|FAILED_PRECONDITION|OUT_OF_RANGE|PERMISSION_DENIED|UNAUTHENTICATED|CANCELLED"

ROWS: list[tuple[str, list[tuple[str, str, list[tuple[str, str]]]]]] = [
    ("Throughput", [
        ("Env steps / s", "ops", [("sum by (name) (rate(atlasrl_actor_env_steps_total[1m]))", "actor {{name}}"),
                                   ("sum by (name) (rate(atlasrl_env_steps_total[1m]))", "envserver {{name}}")]),
        ("Tokens / s", "short", [("sum(rate(atlasrl_actor_generated_tokens_total[1m]))", "generated"),
                                 ("sum(rate(atlasrl_learner_tokens_trained_total[1m]))", "trained")]),
        ("Episodes / s", "short", [("sum by (outcome) (rate(atlasrl_actor_episodes_total[1m]))", "{{outcome}}"),
                                   ("sum(rate(atlasrl_learner_samples_consumed_total[1m]))", "consumed by learner")]),
        ("Learner updates / min", "short", [("60 * rate(atlasrl_learner_updates_total[5m])", "updates")]),
    ]),
    ("Success", [
        ("Training success rate (rolling, per actor)", "percentunit", [("atlasrl_actor_success_rate", "{{name}}")]),
        ("Success share of finished episodes", "percentunit", [
            ('sum(rate(atlasrl_actor_episodes_total{outcome="success"}[5m])) / sum(rate(atlasrl_actor_episodes_total[5m]))', "success")]),
    ]),
    ("Learner", [
        ("Loss", "short", [("atlasrl_learner_loss", "loss"), ("atlasrl_learner_policy_loss", "policy"),
                           ("atlasrl_learner_value_loss", "value")]),
        ("KL and entropy", "short", [("atlasrl_learner_kl", "k3 KL to reference"), ("atlasrl_learner_entropy", "entropy"),
                                     ("atlasrl_learner_entropy_coef", "entropy bonus")]),
        ("Gradient norm", "short", [("atlasrl_learner_grad_norm", "grad norm")]),
        ("Policy version", "short", [("atlasrl_learner_policy_version", "learner"), ("atlasrl_actor_policy_version", "{{name}}"),
                                     ("atlasrl_coordinator_policy_version", "coordinator")]),
    ]),
    ("Staleness", [
        ("Actor version lag", "short", [("atlasrl_actor_policy_version_lag", "{{name}}"),
                                        ("atlasrl_coordinator_actor_version_lag", "coordinator view {{actor}}")]),
        ("Staleness of trained episodes (p50 / p95)", "short", [
            ("histogram_quantile(0.5, sum by (le) (rate(atlasrl_learner_staleness_versions_bucket[5m])))", "p50"),
            ("histogram_quantile(0.95, sum by (le) (rate(atlasrl_learner_staleness_versions_bucket[5m])))", "p95")]),
        ("Staleness-gate waits / s", "short", [("sum by (actor) (rate(atlasrl_coordinator_staleness_waits_total[1m]))", "{{actor}}"),
                                               ("atlasrl_actor_generation_paused", "paused {{name}} {{reason}}")]),
        ("Buffered / unacked episodes", "short", [("atlasrl_learner_buffered_episodes", "learner buffer"),
                                                  ("atlasrl_actor_unacked_episodes", "unacked {{name}}")]),
    ]),
    ("Latencies", [
        ("gRPC p99 by method", "s", [
            ("histogram_quantile(0.99, sum by (le, role, method) (rate(atlasrl_rpc_latency_seconds_bucket[1m])))", "{{role}} {{method}}")]),
        ("Env step p50 / p99", "s", [
            ("histogram_quantile(0.5, sum by (le) (rate(atlasrl_env_step_latency_seconds_bucket[1m])))", "p50"),
            ("histogram_quantile(0.99, sum by (le) (rate(atlasrl_env_step_latency_seconds_bucket[1m])))", "p99")]),
        ("Generation time per batch p50 / p99", "s", [
            ("histogram_quantile(0.5, sum by (le) (rate(atlasrl_actor_generation_seconds_bucket[1m])))", "p50"),
            ("histogram_quantile(0.99, sum by (le) (rate(atlasrl_actor_generation_seconds_bucket[1m])))", "p99")]),
        ("Memory query / shape p99, weight publish", "s", [
            ("histogram_quantile(0.99, sum by (le) (rate(atlasrl_memory_query_latency_seconds_bucket[1m])))", "query p99"),
            ("histogram_quantile(0.99, sum by (le) (rate(atlasrl_memory_shape_latency_seconds_bucket[1m])))", "shape p99"),
            ("histogram_quantile(0.99, sum by (le) (rate(atlasrl_learner_weight_publish_seconds_bucket[5m])))", "publish p99")]),
    ]),
    ("Errors", [
        ("Failed RPCs / s by role and code (server side)", "short", [
            (f'sum by (role, code) (rate(atlasrl_rpc_requests_total{{code!~"OK|{CALLER_CODES}"}}[1m]))'
             ' or on (role) 0 * sum by (role) (rate(atlasrl_rpc_requests_total[1m]))', "{{role}} {{code}}")]),
        ("Refused requests / s by role and code (the caller's: bad input, unknown name, stale, no access)", "short", [
            (f'sum by (role, code) (rate(atlasrl_rpc_requests_total{{code=~"{CALLER_CODES}"}}[1m]))'
             ' or on (role) 0 * sum by (role) (rate(atlasrl_rpc_requests_total[1m]))', "{{role}} {{code}}")]),
        ("Env / memory errors / s (memory: a family it has not seen yet is NOT_FOUND, not a failure)", "short", [
            ("sum by (op, code) (rate(atlasrl_env_errors_total[1m])) or on () 0 * count(atlasrl_env_live_envs)", "env {{op}} {{code}}"),
            (f'sum by (method, code) (rate(atlasrl_memory_errors_total{{code!~"{CALLER_CODES}"}}[1m]))'
             " or on () 0 * count(atlasrl_memory_version)", "memory {{method}} {{code}}"),
            (f'sum by (method, code) (rate(atlasrl_memory_errors_total{{code=~"{CALLER_CODES}"}}[1m]))'
             " or on () 0 * count(atlasrl_memory_version)", "memory refused {{method}} {{code}}")]),
        ("Dropped episodes, reconnects, lease expirations", "short", [
            ("sum by (reason) (increase(atlasrl_actor_dropped_episodes_total[5m]))", "dropped: {{reason}} (5m)"),
            ("sum(increase(atlasrl_actor_env_reconnects_total[5m]))", "env reconnects (5m)"),
            ("sum by (member_role) (increase(atlasrl_coordinator_lease_expirations_total[5m]))", "lease expired {{member_role}} (5m)")]),
        ("Members alive by role", "short", [("atlasrl_coordinator_members", "{{member_role}}"), ("up{job=\"atlasrl\"}", "scrape up {{name}}")]),
    ]),
]


def panel(pid: int, title: str, unit: str, targets: list[tuple[str, str]], x: int, y: int) -> dict:
    return {
        "id": pid, "type": "timeseries", "title": title, "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": H, "w": W, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 5}}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                     "datasource": {"type": "prometheus", "uid": "${datasource}"}} for i, (expr, legend) in enumerate(targets)],
    }


def build() -> dict:
    panels, pid, y = [], 1, 0
    for row_title, row_panels in ROWS:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        for i, (title, unit, targets) in enumerate(row_panels):
            panels.append(panel(pid, title, unit, targets, (i % 2) * W, y + (i // 2) * H))
            pid += 1
        y += ((len(row_panels) + 1) // 2) * H
    return {
        "uid": "atlasrl-run", "title": "atlasrl run", "tags": ["atlasrl"], "timezone": "browser", "schemaVersion": 39,
        "version": 1, "editable": True, "refresh": "10s", "time": {"from": "now-30m", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus",
                                 "current": {}, "hide": 0}]},
        "annotations": {"list": []}, "panels": panels,
    }


def main() -> int:
    text = json.dumps(build(), indent=2) + "\n"
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python {Path(__file__).name}")
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
