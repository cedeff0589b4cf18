"""The actor's Prometheus metrics (one ``Metrics("actor")`` registry per actor)."""
from __future__ import annotations

from atlasrl.clients.spool import LOSS_REASONS, REFUSAL_REASONS
from atlasrl.metrics import Metrics

GEN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ActorMetrics:
    """Counters are cumulative; rates (env steps/s, tokens/s) come from Prometheus' rate()."""

    def __init__(self, metrics: Metrics | None = None):
        self.metrics = m = metrics or Metrics("actor")
        self.env_steps = m.counter("actor_env_steps_total", "Env turns stepped (one action text each)")
        self.tokens = m.counter("actor_generated_tokens_total", "Response tokens generated")
        self.invalid_actions = m.counter("actor_invalid_actions_total", "Turns whose action was invalid, by where it was "
                                         "caught: format (the actor's parser) or env (the env rejected the text)", ["where"])
        self.prompt_tokens = m.counter("actor_prompt_tokens_total", "Prompt tokens fed to the engine")
        self.episodes = m.counter("actor_episodes_total", "Finished episodes, by outcome", ["outcome"])
        self.dropped = m.counter("actor_dropped_episodes_total", "Episodes dropped (never reported), by reason", ["reason"])
        self.success_rate = m.gauge("actor_success_rate", "Success rate over the last 100 finished episodes")
        self.gen_latency = m.histogram("actor_generation_seconds", "Wall time of one batched engine.generate call", buckets=GEN_BUCKETS)
        self.batch_size = m.histogram("actor_generation_batch_size", "Prompts per engine.generate call",
                                      buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
        self.policy_version = m.gauge("actor_policy_version", "Weight version the engine acts with")
        self.version_lag = m.gauge("actor_policy_version_lag", "Learner version minus the engine's version")
        self.paused = m.gauge("actor_generation_paused", "1 while generation waits (buffer full, stale weights, run paused)", ["reason"])
        self.buffered = m.gauge("actor_unacked_episodes", "Episodes waiting for the learner's ack")
        self.weight_updates = m.counter("actor_weight_updates_total", "Weight versions swapped into the engine")
        self.env_reconnects = m.counter("actor_env_reconnects_total", "Env sessions re-opened after a server failure")
        self.memory_misses = m.counter("actor_memory_misses_total", "Episode starts whose memory query failed (memory "
                                       "unreachable or erroring): those episodes ran with an empty memory view")
        # Delivery accounting (atlasrl/clients/spool.py). Not actor_episodes_total: that one counts finished
        # episodes by success/failure, and dashboards divide its success by its sum.
        self.episode_outcomes = m.counter(
            "actor_episode_outcomes_total", "Episodes handed to the learner, by outcome: generated, then one of acked, "
            "refused (reason: the learner's) or lost (reason: actor_stopped, actor_restarted, unreadable); resent = taken back "
            "from the spool after a restart", ["outcome", "reason"])
        # Known label values exported at 0 from the start, so rates and ratios exist before the first event.
        for outcome in ("success", "failure"):
            self.episodes.labels(outcome)
        for reason in ("env_server_down", "env_error"):
            self.dropped.labels(reason)
        for where in ("format", "env"):
            self.invalid_actions.labels(where)
        for reason in ("stale_weights", "learner_backlog", "run_paused", "buffer_full"):
            self.paused.labels(reason)
        for outcome in ("generated", "acked", "resent"):
            self.episode_outcomes.labels(outcome, "")
        for reason in REFUSAL_REASONS:
            self.episode_outcomes.labels("refused", reason)
        for reason in LOSS_REASONS:
            self.episode_outcomes.labels("lost", reason)

    def count_episodes(self, outcome: str, reason: str, n: int) -> None:
        """The spool's observer: n episodes reached an outcome."""
        self.episode_outcomes.labels(outcome, reason).inc(n)
