"""FlowGate: decides whether the actor may generate now, and whether it may start a new GRPO group.

    gate = FlowGate(cfg, policy, sender=sender, registration=reg, metrics=m)
    await gate()              # before each generation batch: returns at once, or waits
    gate.admit(in_flight=12)  # before a finished slot starts a new group: True, or the slot parks

Generation (the whole batch) waits while
- the policy lags the learner by more than ``max_staleness`` versions (the
  learner's TrajectoryInfo.max_staleness unless the config overrides it): the
  actor waits for newer weights instead of producing episodes the learner would
  reject as stale;
- the coordinator's run is paused, or its staleness gate says no.
(A full trajectory buffer pauses generation too, inside TrajectorySender.put.)

Pacing is admission control (as AReaL bounds its rollouts in flight): a new group
starts only while fewer than ``max_learner_backlog`` episodes are untrained
anywhere: in the learner's buffer, unsent here, or being played. Episodes already
started always finish (pausing them mid-way would age their first turns while the
learner moves on, so long episodes would be the ones refused as stale), and so do
the groups they belong to (the learner waits for whole groups). Generation then
runs at the pace training consumes it, at most ~max_learner_backlog/batch versions
behind, and on a shared CPU it leaves the cores to training.
If the learner cannot be reached, the last known state is used.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from atlasrl.actors.config import ActorConfig
from atlasrl.actors.metrics import ActorMetrics

log = logging.getLogger("atlasrl.actors.gate")


class FlowGate:
    def __init__(self, cfg: ActorConfig, policy, *, sender=None, registration=None, metrics: ActorMetrics | None = None):
        self.cfg = cfg
        self.policy = policy
        self.sender = sender
        self.registration = registration
        self.m = metrics or ActorMetrics()
        self.max_staleness = cfg.max_staleness
        self._last_info = 0.0
        self._refresh: asyncio.Task | None = None
        self.learner_buffered = 0        # TrajectoryInfo.buffered at the latest poll
        self.learner_batch: int | None = None  # TrajectoryInfo.batch_episodes (None: not polled yet)
        self.learner_wants_bootstrap = False   # TrajectoryInfo.wants_bootstrap (PPO learners)
        self._accepted_at_poll = 0       # sender.stats.accepted when that poll was sent
        self._by_version: VersionAdmission | None = None   # cfg.staleness_bound, once the learner batch is known
        self.stop_requested = False

    @property
    def learner_version(self) -> int:
        return self.sender.learner_version if self.sender is not None else -1

    def _kick_refresh(self, interval_s: float | None = None) -> None:
        """Poll GetInfo in the background at most every ``interval_s`` (never stalls a batch)."""
        if self.sender is None or (self._refresh is not None and not self._refresh.done()):
            return
        if time.monotonic() - self._last_info < (self.cfg.info_interval_s if interval_s is None else interval_s):
            return
        self._last_info = time.monotonic()
        self._refresh = asyncio.create_task(self.poll_learner())

    async def poll_learner(self) -> None:
        """One GetInfo: the learner's buffer, batch size, bootstrap wish (and staleness bound, unless set here).
        The gate polls in the background; the actor calls it once at start-up, before the first episode ends."""
        accepted = self.sender.stats.accepted
        try:
            info = await self.sender.get_info(timeout=2.0)
        except Exception as e:  # noqa: BLE001 - learner away: keep the last known state
            log.debug("GetInfo failed: %s", e)
            return
        self.learner_buffered, self._accepted_at_poll = int(info.buffered), accepted
        self.learner_batch = int(info.batch_episodes)
        self.learner_wants_bootstrap = bool(info.wants_bootstrap)
        if self.cfg.max_staleness is None:
            self.max_staleness = int(info.max_staleness)

    def untrained(self, in_flight: int) -> int:
        """Episodes of this run not trained yet: in the learner's buffer (as last polled, plus what it acked
        since), unsent here, or being played. Training since the poll is not seen until the next one."""
        acked_since = self.sender.stats.accepted - self._accepted_at_poll
        return self.learner_buffered + acked_since + self.sender.buffered + in_flight

    def admit(self, in_flight: int) -> bool:
        """Whether a new GRPO group may start now (see the module doc)."""
        if self.sender is None:
            return True
        if self.cfg.staleness_bound is not None:
            return self._admit_by_version()
        bound = self.cfg.max_learner_backlog
        if bound is None:   # one learner batch, from its TrajectoryInfo (not polled yet or not told: no bound)
            bound = self.learner_batch
        if not bound:
            return True
        self._kick_refresh(self.cfg.pacing_poll_s)
        ok = self.untrained(in_flight) < bound
        self.m.paused.labels("learner_backlog").set(0 if ok else 1)
        return ok

    def _admit_by_version(self) -> bool:
        if self._by_version is None:
            if not self.learner_batch:          # the learner's batch size is not known yet: ask, and wait
                self._kick_refresh(self.cfg.pacing_poll_s)
                return False
            groups = max(1, self.learner_batch // self.cfg.group_size)
            self._by_version = VersionAdmission(self.cfg.staleness_bound or 0, groups, lambda: self.policy.version,
                                                base_version=self.policy.version)
        ok = self._by_version()
        self.m.paused.labels("staleness_bound").set(0 if ok else 1)
        return ok

    def lag(self) -> int:
        v = self.learner_version
        return max(0, v - self.policy.version) if v >= 0 else 0

    async def __call__(self) -> None:
        self._kick_refresh()
        if self.cfg.staleness_bound is not None:
            await self.policy.maybe_update()   # slots parked on the bound wait for exactly this version
        self.m.version_lag.set(self.lag())
        if self.max_staleness is not None and self.lag() > self.max_staleness:
            self.m.paused.labels("stale_weights").set(1)
            log.info("policy version %d lags learner %d by more than %d: waiting for weights",
                     self.policy.version, self.learner_version, self.max_staleness)
            try:
                while self.lag() > self.max_staleness:
                    need = self.learner_version - self.max_staleness - 1
                    try:
                        await asyncio.wait_for(self.policy.wait_for_version_above(need), self.cfg.info_interval_s)
                    except TimeoutError:
                        await self.poll_learner()  # the learner may have moved on (or back)
            finally:
                self.m.paused.labels("stale_weights").set(0)
            self.m.version_lag.set(self.lag())
        reg = self.registration
        if reg is not None:
            reg.policy_version = self.policy.version
            self.m.paused.labels("run_paused").set(1)
            try:
                if not await reg.wait_running():
                    self.stop_requested = True
                    return
                while True:  # the coordinator's staleness gate: keep swapping in weights while it holds us
                    await self.policy.maybe_update()
                    reg.policy_version = self.policy.version
                    try:
                        await reg.wait_until_fresh(timeout=0.5)
                        break
                    except TimeoutError:
                        if reg.stopping:
                            self.stop_requested = True
                            return
            finally:
                self.m.paused.labels("run_paused").set(0)


class VersionAdmission:
    """Bounded staleness by admission (AReaL's max_head_offpolicyness): a new GRPO group may start only while the
    groups started stay within ``bound + 1`` learner batches of the loaded policy version.

        admit = VersionAdmission(bound=1, groups_per_batch=4, version=lambda: policy.version)
        RolloutLoop(..., admit=admit)

    With policy version v (v updates trained since ``base_version``), groups of batch b (the b-th run of
    ``groups_per_batch`` groups, in start order) start once v >= b - bound. Bound 0 is synchronous training:
    batch b starts only with the weights trained on batch b - 1, and nothing is generated while the learner
    trains (every slot parks). Bound k lets generation run k batches ahead of training. Only the start of a
    group is gated: episodes in flight finish (drain) or continue on new weights (interrupt).
    """

    def __init__(self, bound: int, groups_per_batch: int, version: Callable[[], int], base_version: int = 0):
        if bound < 0 or groups_per_batch < 1:
            raise ValueError(f"bound must be >= 0 and groups_per_batch >= 1, got {bound}, {groups_per_batch}")
        self.bound, self.groups_per_batch = bound, groups_per_batch
        self.version, self.base_version = version, base_version
        self.started = 0     # groups admitted so far

    def allowed(self) -> int:
        """Groups that may have started at the current version."""
        return (self.version() - self.base_version + 1 + self.bound) * self.groups_per_batch

    def __call__(self, in_flight: int = 0) -> bool:
        if self.started >= self.allowed():
            return False
        self.started += 1
        return True
