"""Training termination and reward from the progress critic (actor config ``reward.source = critic``).

    judge = CriticJudge(cfg.reward, critic_address, metrics)
    await judge.start()                                        # Info: does the critic want the first frame / oracle?
    verdicts = await judge.judge([(episode, next_obs), ...])   # one Score per episode, all at once, with a deadline
    keep = judge.apply(episode, turn, next_obs, verdicts[i])   # rewrites turn.reward; False = drop the episode
    judge.finished(episode)                                    # agreement of the critic's done with env success

The rules (VLAC integration guideline, docs/critic.md), for training episodes only:
- the env's reward and success are not used for training; after each step the critic judges the new frame;
- critic done (done_probability >= done_threshold): the episode ends here, terminal reward 1.0;
- else, when the episode ends at the step cap (the actor's max_turns or the env's own step limit), the critic's
  progress of the last frame is the reward; an env that cannot go on (terminated: a hole) ends the episode the
  same way, since it cannot be stepped further: its own success flag is never read for training;
- else the turn's critic reward is 0.
The turn keeps the env's reward in ``env_reward`` (logged, never trained on) and ``reward`` carries the critic's
part in its place (plus format and shaping terms, as before). Evaluation never builds a judge: env done only.

A critic that is down or slower than ``deadline_s``: ``fallback`` decides. ``drop_episode`` drops the episode
(its seed goes back to the schedule), ``env`` finishes it on the env's reward and done; both are counted, and
no turn is ever trained on a missing reward.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import grpc

from atlasrl.actors.config import RewardConfig
from atlasrl.actors.episode import EpisodeBuffer
from atlasrl.metrics import Metrics
from atlasrl.v1 import env_pb2, trajectory_pb2

log = logging.getLogger("atlasrl.actors.critic")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass
class Verdict:
    progress: float
    done_probability: float


@dataclass
class CriticStats:
    """Cumulative figures (the coordinator heartbeat and the `up` summary read them)."""

    calls: int = 0
    failures: int = 0
    fallbacks: dict[str, int] = field(default_factory=lambda: {"env": 0, "drop_episode": 0})
    latency_s: float = 0.0                 # sum over calls, for the mean
    agreement: dict[str, int] = field(default_factory=lambda: {"tp": 0, "fp": 0, "fn": 0, "tn": 0})

    def precision_recall_f1(self) -> tuple[float, float, float]:
        a = self.agreement
        p = a["tp"] / (a["tp"] + a["fp"]) if a["tp"] + a["fp"] else 0.0
        r = a["tp"] / (a["tp"] + a["fn"]) if a["tp"] + a["fn"] else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)


class CriticJudge:
    def __init__(self, cfg: RewardConfig, address: str, metrics: Metrics):
        from atlasrl.clients.critic import CriticClient

        self.cfg = cfg
        self.client = CriticClient(address)
        self.pairwise = True       # until Info says otherwise: send the first frame too
        self.oracle = False
        self.stats = CriticStats()
        self.m_latency = metrics.histogram("actor_critic_latency_seconds", "Critic Score call, actor side",
                                           buckets=LATENCY_BUCKETS)
        self.m_calls = metrics.counter("actor_critic_calls", "Critic Score calls, by result", ["result"])
        self.m_fallbacks = metrics.counter("actor_critic_fallbacks", "Steps the critic did not judge in time, by "
                                           "the fallback taken", ["fallback"])
        self.m_agree = metrics.counter("actor_critic_agreement", "Finished critic-judged episodes: critic done vs "
                                       "env success (tp, fp, fn, tn)", ["outcome"])
        for k in ("tp", "fp", "fn", "tn"):
            self.m_agree.labels(k)
        for k in ("env", "drop_episode"):
            self.m_fallbacks.labels(k)

    async def start(self) -> None:
        try:
            info = await self.client.info(timeout=max(self.cfg.deadline_s, 5.0))
        except grpc.RpcError as e:   # not fatal: every step falls back until it answers
            log.warning("critic %s did not answer Info (%s): sending the first frame with every step",
                        self.client.target, e.code().name)
            return
        self.pairwise, self.oracle = info.pairwise, info.backend == "oracle"
        log.info("critic %s: backend %s, pairwise %s", self.client.target, info.backend, info.pairwise)

    async def close(self) -> None:
        await self.client.close()

    # -- per step ----------------------------------------------------------------
    async def judge(self, items: list[tuple[EpisodeBuffer, env_pb2.Observation]]) -> list[Verdict | None]:
        """One Score call per episode (concurrent: the critic batches them); None where it failed or was late."""
        return list(await asyncio.gather(*(self._one(ep, obs) for ep, obs in items)))

    async def _one(self, ep: EpisodeBuffer, obs: env_pb2.Observation) -> Verdict | None:
        if ep.reward_fallback or not obs.images:
            return None
        from atlasrl.clients.critic import frame, oracle_state

        frames = []
        if self.pairwise and ep.first_obs.images:
            frames.append(frame(ep.first_obs.images[0], oracle_state(ep.first_obs, ep.spec) if self.oracle else None))
        frames.append(frame(obs.images[0], oracle_state(obs, ep.spec) if self.oracle else None))
        t0 = time.perf_counter()
        try:
            scores = await self.client.score(self.cfg.task or ep.spec.instruction, frames, last_only=True,
                                             timeout=self.cfg.deadline_s)
        except grpc.RpcError as e:
            self.stats.failures += 1
            self.m_calls.labels(e.code().name).inc()
            if self.stats.failures in (1, 10, 100) or self.stats.failures % 1000 == 0:
                log.warning("critic call failed (%s: %s); fallback %s (%d failures)", e.code().name, e.details(),
                            self.cfg.fallback, self.stats.failures)
            return None
        dt = time.perf_counter() - t0
        self.stats.calls += 1
        self.stats.latency_s += dt
        self.m_calls.labels("OK").inc()
        self.m_latency.observe(dt)
        return Verdict(scores[-1].progress, scores[-1].done_probability)

    def apply(self, ep: EpisodeBuffer, turn: trajectory_pb2.TurnRecord, obs: env_pb2.Observation,
              verdict: Verdict | None) -> bool:
        """Put the critic's reward into ``turn`` (before it is added to ``ep``); False = drop the episode."""
        if ep.reward_fallback:          # an earlier step fell back to the env: it finishes on env reward and done
            return True
        if verdict is None:
            self.stats.fallbacks[self.cfg.fallback] += 1
            self.m_fallbacks.labels(self.cfg.fallback).inc()
            if self.cfg.fallback == "drop_episode":
                return False
            ep.reward_fallback = True   # turn.reward keeps the env's reward from here on
            return True
        if verdict.done_probability >= self.cfg.done_threshold:
            critic_reward = 1.0
            ep.critic_done = True
        elif len(ep.turns) + 1 >= ep.max_turns or obs.truncated or obs.terminated:
            critic_reward = float(verdict.progress)     # the step cap (or an env that cannot go on)
        else:
            critic_reward = 0.0
        turn.reward += critic_reward - turn.env_reward
        return True

    def finished(self, ep: EpisodeBuffer) -> None:
        """Agreement of the critic's done with the env's success, for critic-judged episodes."""
        if ep.reward_fallback:
            return
        key = ("t" if ep.critic_done == ep.success else "f") + ("p" if ep.critic_done else "n")
        self.stats.agreement[key] += 1
        self.m_agree.labels(key).inc()

    def report(self, counters: dict, gauges: dict) -> None:
        """Coordinator heartbeat figures (cumulative counters; the `up` summary derives rates and F1)."""
        s = self.stats
        counters["critic_calls"] = s.calls
        counters["critic_failures"] = s.failures
        counters["critic_latency_ms_sum"] = int(s.latency_s * 1000)
        for k, v in s.fallbacks.items():
            counters[f"critic_fallback_{k}"] = v
        for k, v in s.agreement.items():
            counters[f"critic_{k}"] = v
        p, r, f1 = s.precision_recall_f1()
        gauges["critic_precision"], gauges["critic_recall"], gauges["critic_f1"] = p, r, f1


def run_summary(counters: dict, wall_s: float) -> dict | None:
    """The critic figures of a run from the coordinator's summed actor counters (``actor.critic_*``): calls, calls/s
    over the run's wall time, mean latency, fallbacks and the agreement of critic done with env success. None when
    no actor used a critic."""
    c = {k.removeprefix("actor.critic_"): v for k, v in counters.items() if k.startswith("actor.critic_")}
    if not c:
        return None
    stats = CriticStats(agreement={k: int(c.get(k, 0)) for k in ("tp", "fp", "fn", "tn")})
    p, r, f1 = stats.precision_recall_f1()
    calls = int(c.get("calls", 0))
    return {"calls": calls, "calls_per_s": round(calls / wall_s, 2) if wall_s > 0 else 0.0,
            "latency_ms_mean": round(c.get("latency_ms_sum", 0) / calls, 2) if calls else None,
            "failures": int(c.get("failures", 0)),
            "fallbacks": {k: int(c.get(f"fallback_{k}", 0)) for k in ("env", "drop_episode")},
            "agreement": {**stats.agreement, "precision": round(p, 3), "recall": round(r, 3), "f1": round(f1, 3)}}


def summary_line(s: dict) -> str:
    a = s["agreement"]
    lat = "-" if s["latency_ms_mean"] is None else f"{s['latency_ms_mean']:.1f} ms"
    return (f"critic: {s['calls']:,} calls ({s['calls_per_s']:.1f}/s, mean {lat}), {s['failures']} failed, fallbacks "
            f"env {s['fallbacks']['env']} / drop {s['fallbacks']['drop_episode']}; critic done vs env success: precision "
            f"{a['precision']:.2f} recall {a['recall']:.2f} F1 {a['f1']:.2f} (tp {a['tp']} fp {a['fp']} fn {a['fn']} "
            f"tn {a['tn']})")
