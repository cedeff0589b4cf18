"""`evaluate` over a real env server: each held-out seed played once, JSONL written, report consistent."""
import json

from atlasrl.actors.eval import evaluate, wilson_interval
from atlasrl.actors.policy import Policy
from atlasrl.actors.rollout import env_clients

from .conftest import actor_config


async def test_eval_plays_each_seed_once(tiny_engine, env_server, tmp_path):
    cfg = actor_config(envs=[env_server.address], num_envs=4, temperature=0.0)
    out = tmp_path / "rollouts.jsonl"
    report = await evaluate(cfg, Policy(tiny_engine, cfg), env_clients([env_server.address]), episodes=10,
                            seed_start=5000, jsonl=out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["seed"] for r in rows] == list(range(5000, 5010))
    assert report.episodes == 10 and report.successes == sum(r["success"] for r in rows)
    assert (report.ci_low, report.ci_high) == wilson_interval(report.successes, 10)
    assert report.ci_low <= report.success_rate <= report.ci_high
    from collections import Counter
    assert report.causes == Counter(r["terminal_cause"] or "none" for r in rows) and sum(report.causes.values()) == 10
    assert all(1 <= r["turns"] <= 6 and len(r["actions"]) == r["turns"] for r in rows)
    # Greedy and same seeds: a second evaluation gives the same episodes.
    again = await evaluate(cfg, Policy(tiny_engine, cfg), env_clients([env_server.address]), episodes=10, seed_start=5000)
    assert again.successes == report.successes and again.mean_turns == report.mean_turns
