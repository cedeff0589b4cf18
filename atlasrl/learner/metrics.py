"""The learner's Prometheus metrics (rank 0), named as CleanRL logs its diagnostics."""
from __future__ import annotations

import collections

from atlasrl.metrics import Metrics

STALENESS_BUCKETS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 32, 64)
PUBLISH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class LearnerMetrics:
    def __init__(self, metrics: Metrics | None = None):
        m = self.metrics = metrics or Metrics("learner")
        self.episodes = m.counter("learner_episodes_received_total", "Pushed episodes by outcome", ["outcome"])
        self.refused = m.counter("learner_episodes_refused_total", "Episodes refused for good, by reason (on arrival: "
                                 "invalid, stale, unknown_version, unparseable; from the buffer: dropped_stale, incomplete_group)",
                                 ["reason"])
        self.refused_counts: collections.Counter[str] = collections.Counter()
        self.buffered = m.gauge("learner_buffered_episodes", "Episodes waiting in the buffer")
        self.consumed = m.counter("learner_samples_consumed_total", "Episodes trained on")
        self.tokens = m.counter("learner_tokens_trained_total", "Tokens (prompt+response) through forward/backward")
        self.staleness = m.histogram("learner_staleness_versions", "Lag (learner version - episode version) of trained episodes", buckets=STALENESS_BUCKETS)
        self.version = m.gauge("learner_policy_version", "Current policy version")
        self.updates = m.counter("learner_updates_total", "Optimizer updates")
        self.publish_seconds = m.histogram("learner_weight_publish_seconds", "Gather + encode + hand-off of one weight version", buckets=PUBLISH_BUCKETS)
        self.subscribers = m.gauge("learner_weight_subscribers", "Open WeightService.Subscribe streams")
        self.sent_bytes = m.counter("learner_weight_sent_bytes_total", "Weight bytes streamed to subscribers")
        self.transport_subscribers = m.gauge("learner_weight_transport_subscribers", "Open Subscribe streams by weight "
                                             "transport (stream, delta, collective)", ["transport"])
        self.versions_sent = m.counter("learner_weight_versions_sent_total", "Weight versions sent to one subscriber, by "
                                       "how: stream (full bytes), delta, collective (announced; bytes broadcast)", ["transport"])
        self.delta_fraction = m.gauge("learner_weight_delta_fraction", "Wire bytes of the last delta / of the full version")
        self.collective_seconds = m.histogram("learner_weight_collective_seconds", "Wall time of one collective round "
                                              "(group formation + broadcast)", buckets=PUBLISH_BUCKETS)
        self.collective_failures = m.counter("learner_weight_collective_failures_total", "Collective rounds that failed "
                                             "(members evicted to the stream)")
        self.collective_members = m.gauge("learner_weight_collective_members", "Subscribers in the weight group")
        for t in ("stream", "delta", "collective"):
            self.transport_subscribers.labels(t)
            self.versions_sent.labels(t)
        # Per-update diagnostics (last value), as CleanRL logs them.
        self.stats = {
            name: m.gauge(f"learner_{name}", doc)
            for name, doc in [
                ("loss", "Total loss of the last update"),
                ("policy_loss", "Clipped surrogate loss"),
                ("value_loss", "PPO value loss"),
                ("kl", "k3 KL to the reference policy"),
                ("entropy", "Mean token entropy"),
                ("entropy_coef", "Entropy bonus of the last update (it may decay over updates)"),
                ("lr", "Learning rate of the last update (it may decay over updates)"),
                ("grad_norm", "Gradient norm before clipping"),
                ("clipfrac", "Fraction of tokens whose ratio was clipped"),
                ("approx_kl", "Approximate KL(proximal || current), (r - 1) - log r"),
                ("behav_weight_mean", "Mean truncated importance weight pi_prox / pi_behaviour"),
                ("tokens_per_second", "Trained tokens per second in the last update"),
                ("reward_mean", "Mean episode return in the last batch"),
                ("advantage_std", "Std of token advantages in the last batch"),
            ]
        }

    def count_refused(self, reason: str, n: int = 1) -> None:
        """An episode refused for good (any thread): Prometheus, and ``refused_counts`` for the coordinator."""
        self.refused.labels(reason).inc(n)
        self.refused_counts[reason] += n

    def record_update(self, stats: dict[str, float]) -> None:
        for k, v in stats.items():
            g = self.stats.get(k)
            if g is not None:
                g.set(v)
