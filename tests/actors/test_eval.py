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


async def test_eval_with_memory_ingests_and_reports_success_by_visit(tiny_engine, env_server):
    """Revisited layouts: the eval feeds the memory its own episodes, and reports success per visit of a layout."""
    from atlasrl.actors.memory_hints import MemoryAdvisor
    from atlasrl.clients.memory import MemoryClient
    from atlasrl.memory.config import MemoryConfig
    from atlasrl.memory.server import MemoryServer
    from atlasrl.rpc import ServerConfig

    memory = MemoryServer(MemoryConfig(server=ServerConfig(port=0)))
    await memory.start()
    try:
        env = {"text_mode": "relative", "max_actions_per_turn": "1", "max_steps": "6", "hidden_holes": "true",
               "layout_pool": "3", "layout_pool_seed": "7"}
        cfg = actor_config(envs=[env_server.address], num_envs=3, temperature=1.0, env_config=env,
                           memory=memory.address, memory_risk=True, memory_shaping=False)
        advisor = MemoryAdvisor.from_config(cfg)
        report = await evaluate(cfg, Policy(tiny_engine, cfg), env_clients([env_server.address]), episodes=12,
                                seed_start=900, memory=advisor)
        await advisor.flush(10)
        await advisor.close()
        async with MemoryClient(memory.address) as client:
            stats = await client.stats()
    finally:
        await memory.stop(0)
    assert stats.episodes_ingested == 12
    assert [v["visit"] for v in report.by_visit] == [0, 1, 2, 3] and all(v["episodes"] == 3 for v in report.by_visit)
    assert sum(v["successes"] for v in report.by_visit) == report.successes
    layouts = {s.layout_key for s in stats.atlases if s.layout_key}
    assert len(layouts) == 3          # three recurring layouts, each visited four times
