"""Learning curves from the coordinator's history samples (pure functions; no gRPC)."""
from __future__ import annotations

from dataclasses import dataclass

# Keys of the coordinator's global counters and gauges ("role.name") that the curves read.
STEPS, EPISODES, SUCCESSES = "actor.env_steps", "actor.episodes", "actor.successes"
SUCCESS_GAUGE, RETURN_GAUGE, LOSS_GAUGE = "actor.success_rate", "actor.return_mean", "learner.loss"


@dataclass(frozen=True)
class Sample:
    time: float
    counters: dict[str, int]
    gauges: dict[str, float]


def from_status(history) -> list[Sample]:
    """Samples from ClusterStatus.history; gauges are carried forward, so a gauge whose members
    stopped (actors at the end of a run) keeps its last value instead of vanishing."""
    out: list[Sample] = []
    gauges: dict[str, float] = {}
    for h in history:
        gauges = {**gauges, **dict(h.gauges)}
        out.append(Sample(h.time, dict(h.counters), gauges))
    return out


@dataclass(frozen=True)
class CurvePoint:
    time: float          # seconds since the first sample
    env_steps: int
    episodes: int
    success_rate: float  # over the episodes finished in this window
    return_mean: float   # latest gauge value (nan when no actor reports it)
    loss: float          # latest learner loss (nan before the first update)


def curve(samples: list[Sample], min_episodes: int = 16) -> list[CurvePoint]:
    """Success rate per window of at least ``min_episodes`` finished episodes (from cumulative counters)."""
    if not samples:
        return []
    t0 = samples[0].time
    out: list[CurvePoint] = []
    start = samples[0]
    for s in samples[1:]:
        episodes = s.counters.get(EPISODES, 0) - start.counters.get(EPISODES, 0)
        if episodes < min_episodes:
            continue
        rate = _window_success(start, s, episodes)
        out.append(CurvePoint(s.time - t0, s.counters.get(STEPS, 0), s.counters.get(EPISODES, 0), rate,
                              s.gauges.get(RETURN_GAUGE, float("nan")), s.gauges.get(LOSS_GAUGE, float("nan"))))
        start = s
    return out


def recent_success(samples: list[Sample], episodes: int = 64) -> tuple[float, int]:
    """Success rate over (at least) the last ``episodes`` finished episodes: (rate, episodes counted)."""
    if len(samples) < 2:
        return float("nan"), 0
    last = samples[-1]
    for s in reversed(samples[:-1]):
        n = last.counters.get(EPISODES, 0) - s.counters.get(EPISODES, 0)
        if n >= episodes or s is samples[0]:
            return (_window_success(s, last, n) if n else float("nan")), n
    return float("nan"), 0


def _window_success(start: Sample, end: Sample, episodes: int) -> float:
    """Successes / episodes between two samples; actors that report no ``successes`` counter
    are read through their rolling ``success_rate`` gauge instead."""
    if SUCCESSES in end.counters:
        return (end.counters[SUCCESSES] - start.counters.get(SUCCESSES, 0)) / episodes
    return end.gauges.get(SUCCESS_GAUGE, float("nan"))


def steps_to_reach(points: list[CurvePoint], target: float) -> int | None:
    """Env steps at the first window whose success rate reached ``target`` (None if never)."""
    for p in points:
        if p.success_rate >= target:
            return p.env_steps
    return None
