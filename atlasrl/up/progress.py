"""Learning curves from the coordinator's history samples (pure functions; no gRPC)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    time: float
    counters: dict[str, int]
    gauges: dict[str, float]


def from_status(history) -> list[Sample]:
    return [Sample(h.time, dict(h.counters), dict(h.gauges)) for h in history]


@dataclass(frozen=True)
class CurvePoint:
    time: float          # seconds since the first sample
    env_steps: int
    episodes: int
    success_rate: float  # over the episodes finished in this window
    return_mean: float   # latest gauge value (nan when no actor reports it)
    loss: float          # latest learner loss (nan before the first update)
    policy_version: float


def curve(samples: list[Sample], min_episodes: int = 16) -> list[CurvePoint]:
    """Success rate per window of at least ``min_episodes`` finished episodes (from cumulative counters)."""
    if not samples:
        return []
    t0 = samples[0].time
    out: list[CurvePoint] = []
    start = samples[0]
    for s in samples[1:]:
        episodes = s.counters.get("episodes", 0) - start.counters.get("episodes", 0)
        if episodes < min_episodes:
            continue
        wins = s.counters.get("successes", 0) - start.counters.get("successes", 0)
        out.append(CurvePoint(s.time - t0, s.counters.get("env_steps", 0), s.counters.get("episodes", 0), wins / episodes,
                              s.gauges.get("return_mean", float("nan")), s.gauges.get("loss", float("nan")),
                              s.gauges.get("policy_version", float("nan"))))
        start = s
    return out


def recent_success(samples: list[Sample], episodes: int = 64) -> tuple[float, int]:
    """Success rate over (at least) the last ``episodes`` finished episodes: (rate, episodes counted)."""
    if len(samples) < 2:
        return float("nan"), 0
    last = samples[-1]
    for s in reversed(samples[:-1]):
        n = last.counters.get("episodes", 0) - s.counters.get("episodes", 0)
        if n >= episodes or s is samples[0]:
            wins = last.counters.get("successes", 0) - s.counters.get("successes", 0)
            return (wins / n if n else float("nan")), n
    return float("nan"), 0


def steps_to_reach(points: list[CurvePoint], target: float) -> int | None:
    """Env steps at the first window whose success rate reached ``target`` (None if never)."""
    for p in points:
        if p.success_rate >= target:
            return p.env_steps
    return None
