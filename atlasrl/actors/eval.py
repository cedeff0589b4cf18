"""Held-out evaluation: play seeds [seed_start, seed_start + episodes) once each, no learner.

    report = await evaluate(cfg, policy, links, episodes=100, seed_start=10_000, jsonl="rollouts.jsonl")
    report.success_rate, report.ci_low, report.ci_high

Success is the env's own ``success`` at the end of each episode. The interval is
Wilson's score interval (better than the normal approximation near 0 and 1 and
for small n). Episodes dropped by an env server failure are replayed, so every
seed counts exactly once.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist

from atlasrl.actors.config import ActorConfig
from atlasrl.actors.groups import SeedSchedule


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when n == 0."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends: no rounding residue
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


@dataclass
class EvalReport:
    episodes: int
    successes: int
    success_rate: float
    ci_low: float
    ci_high: float
    confidence: float
    mean_turns: float
    mean_return: float
    dropped: int
    seed_start: int
    causes: dict[str, int] = field(default_factory=dict)   # episodes per terminal cause ("success", "hole", ...)
    by_visit: list[dict] = field(default_factory=list)
    """With env layout_pool K: success by visit number (seeds seed_start + v*K .. + K - 1 are visit v of each of
    the K layouts), each {visit, episodes, successes, success_rate, ci_low, ci_high}: how a memory that ingests
    during the eval helps on layouts it has seen before."""

    def summary(self) -> str:
        causes = causes_text(self.causes)
        return (f"success {self.successes}/{self.episodes} = {self.success_rate:.3f} "
                f"({self.confidence:.0%} Wilson CI [{self.ci_low:.3f}, {self.ci_high:.3f}]), "
                f"mean turns {self.mean_turns:.2f}, mean return {self.mean_return:.3f}, dropped {self.dropped}"
                + (f"; ended by: {causes}" if causes else ""))


def causes_text(causes: dict[str, int], skip: tuple[str, ...] = ()) -> str:
    """'hole 8, timeout 1': episodes per terminal cause, most frequent first, leaving out ``skip``."""
    return ", ".join(f"{k} {v}" for k, v in sorted(causes.items(), key=lambda kv: -kv[1]) if k not in skip)


async def evaluate(cfg: ActorConfig, policy, links, *, episodes: int, seed_start: int, jsonl: str | Path | None = None,
                   confidence: float = 0.95, metrics=None, memory=None) -> EvalReport:
    """``memory``: a MemoryAdvisor, so that the eval reads the memory's view and (with cfg.memory_ingest) feeds it
    its own episodes, as a deployed agent would on layouts it revisits."""
    from atlasrl.actors.rollout import RolloutLoop

    seeds = SeedSchedule(cfg.actor_id, group_size=1, seed_start=seed_start, limit=episodes)
    records: list[dict] = []

    async def collect(ep_proto, ep):
        records.append({
            "episode_id": ep.episode_id, "seed": ep.seed, "success": ep.success, "terminal_cause": ep.terminal_cause,
            "turns": len(ep.turns), "return": ep.total_reward, "layout_key": ep.first_obs.layout_key,
            "actions": [t.action_text for t in ep.turns], "responses_tokens": [len(t.response_ids) for t in ep.turns],
        })

    cfg = cfg.model_copy(update={"num_envs": min(cfg.num_envs, episodes), "group_size": 1})
    loop = RolloutLoop(cfg, policy, links, seeds=seeds, on_episode=collect, metrics=metrics, memory=memory)
    await loop.run(max_episodes=episodes)
    n = len(records)
    wins = sum(r["success"] for r in records)
    lo, hi = wilson_interval(wins, n, confidence)
    if jsonl:
        with open(jsonl, "w") as f:
            for r in sorted(records, key=lambda r: r["seed"]):
                f.write(json.dumps(r) + "\n")
    return EvalReport(
        episodes=n, successes=wins, success_rate=wins / n if n else 0.0, ci_low=lo, ci_high=hi, confidence=confidence,
        mean_turns=sum(r["turns"] for r in records) / n if n else 0.0,
        mean_return=sum(r["return"] for r in records) / n if n else 0.0,
        dropped=loop.dropped, seed_start=seed_start,
        causes=dict(Counter(r["terminal_cause"] or "none" for r in records)),
        by_visit=success_by_visit(records, seed_start, int(cfg.env_config.get("layout_pool", "0") or 0), confidence),
    )


def success_by_visit(records: list[dict], seed_start: int, pool: int, confidence: float = 0.95) -> list[dict]:
    """Success per visit number of a pooled layout (seed s is visit (s - seed_start) // pool); [] without a pool."""
    if pool <= 0:
        return []
    visits: dict[int, list[bool]] = {}
    for r in records:
        visits.setdefault((r["seed"] - seed_start) // pool, []).append(bool(r["success"]))
    out = []
    for v in sorted(visits):
        wins, n = sum(visits[v]), len(visits[v])
        lo, hi = wilson_interval(wins, n, confidence)
        out.append({"visit": v, "episodes": n, "successes": wins, "success_rate": wins / n, "ci_low": lo, "ci_high": hi})
    return out


def report_json(report: EvalReport) -> str:
    return json.dumps(asdict(report))
