"""FlowGate: decides, before each generation batch, whether the actor may generate now.

    gate = FlowGate(cfg, policy, sender=sender, registration=reg, metrics=m)
    await gate()          # returns at once, or waits while the actor must not generate

Generation waits while
- the policy lags the learner by more than ``max_staleness`` versions (the
  learner's TrajectoryInfo.max_staleness unless the config overrides it): the
  actor waits for newer weights instead of producing episodes the learner would
  reject as stale;
- the learner already holds ``max_learner_backlog`` untrained episodes in complete groups: more
  would only go stale in its buffer (and on a shared CPU steal cores from training);
- the coordinator's run is paused, or its staleness gate says no.
(A full trajectory buffer pauses generation too, inside TrajectorySender.put.)
If the learner cannot be reached, the last known state is used: the bounded
buffer, not this gate, handles an absent learner.
"""
from __future__ import annotations

import asyncio
import logging
import time

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
        self.learner_backlog = 0
        self.stop_requested = False

    @property
    def learner_version(self) -> int:
        return self.sender.learner_version if self.sender is not None else -1

    def _kick_refresh(self) -> None:
        """Poll GetInfo in the background at most every info_interval_s (never stalls a batch)."""
        if self.sender is None or (self._refresh is not None and not self._refresh.done()):
            return
        if time.monotonic() - self._last_info < self.cfg.info_interval_s:
            return
        self._last_info = time.monotonic()
        self._refresh = asyncio.create_task(self._refresh_info())

    async def _refresh_info(self) -> None:
        try:
            info = await self.sender.get_info(timeout=2.0)
        except Exception as e:  # noqa: BLE001 - learner away: keep the last known state
            log.debug("GetInfo failed: %s", e)
            return
        # Trainable episodes only: episodes of an incomplete group wait for members this actor is still
        # playing, and pausing on them would stall both sides until the learner's group timeout.
        self.learner_backlog = int(info.ready)
        if self.cfg.max_staleness is None:
            self.max_staleness = int(info.max_staleness)

    def _stopping(self) -> bool:
        return self.registration is not None and self.registration.stopping

    def lag(self) -> int:
        v = self.learner_version
        return max(0, v - self.policy.version) if v >= 0 else 0

    async def __call__(self) -> None:
        self._kick_refresh()
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
                    except asyncio.TimeoutError:
                        await self._refresh_info()  # the learner may have moved on (or back)
            finally:
                self.m.paused.labels("stale_weights").set(0)
            self.m.version_lag.set(self.lag())
        bound = self.cfg.max_learner_backlog
        if bound and self.sender is not None and self.learner_backlog >= bound:
            self.m.paused.labels("learner_backlog").set(1)
            try:
                while self.learner_backlog >= bound and self.sender.connected and not self._stopping():
                    await asyncio.sleep(self.cfg.info_interval_s / 2)
                    await self._refresh_info()
            finally:
                self.m.paused.labels("learner_backlog").set(0)
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
                    except asyncio.TimeoutError:
                        if reg.stopping:
                            self.stop_requested = True
                            return
            finally:
                self.m.paused.labels("run_paused").set(0)
