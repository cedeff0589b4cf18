"""The learner's episode buffer: dedup by episode id, whole GRPO groups, bounded staleness.

    buf = EpisodeBuffer(cfg, vocab_size=32000)
    buf.add(episode, learner_version)           # "accepted" | "duplicate"; raises EpisodeRejected / BufferFull
    batch = buf.take(8, learner_version, timeout=2.0)   # list[Buffered] or None

Thread-safe: the gRPC loop adds, the training thread takes. Episodes are
grouped by ``group_id`` (GRPO) or stand alone (PPO); ``take`` hands out whole
groups in arrival order once they are complete (or timed out with >= 2 members).
Staleness is checked twice: on arrival, and again when taken (the learner may
have moved on while the episode waited).

With a ledger (``learner/ledger.py``), every outcome is also written to disk before
``add`` returns: accepted episodes with their bytes, refusals and later drops with
their reason. The caller acknowledges an episode only after ``add`` returned.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from atlasrl.learner.config import LearnerConfig
from atlasrl.learner.ledger import EpisodeLedger
from atlasrl.learner.validation import MAX_ID_CHARS, Malformed, Unacceptable, check_versions, validate_episode
from atlasrl.v1 import trajectory_pb2


class BufferFull(Exception):
    """No room now; the episode is not acked so the actor resends it later."""


@dataclass
class Buffered:
    episode: trajectory_pb2.Episode
    arrived: float
    weight: float = 1.0   # staleness down-weight, applied to every token's loss
    lag: int = 0          # learner_version - oldest turn version when taken


@dataclass
class _Group:
    size: int
    created: float
    dropped: int = 0   # members dropped as stale
    members: list[Buffered] = field(default_factory=list)
    actor_id: str = ""  # the producer (group ids are per actor)


class EpisodeBuffer:
    def __init__(self, cfg: LearnerConfig, vocab_size: int, clock=time.monotonic, check=None,
                 ledger: EpisodeLedger | None = None, on_drop=None):
        self.cfg = cfg
        self.ledger = ledger
        self.on_drop = on_drop   # (reason, n): accepted episodes given up on (metrics)
        self.check = check   # optional model-aware check (validation.ModelInputCheck)
        self.vocab_size = vocab_size
        self.grouped = cfg.algo in ("grpo", "gigpo")
        self._clock = clock
        self._cv = threading.Condition()
        self._groups: OrderedDict[str, _Group] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._count = 0
        self.consumed = 0
        self.dropped_stale = 0
        self.dropped_incomplete = 0

    # ---- producer side -------------------------------------------------
    def add(self, ep: trajectory_pb2.Episode, learner_version: int) -> str:
        try:
            validate_episode(ep, vocab_size=self.vocab_size, max_seq_tokens=self.cfg.max_seq_tokens, need_group=self.grouped)
            if self.grouped and ep.group_size < 1:
                raise Malformed("group_size is 0; GRPO needs the expected group size")
            if self.check is not None:
                self.check(ep)
        except Malformed:
            if self.ledger is not None and 0 < len(ep.episode_id) <= MAX_ID_CHARS:
                self.ledger.refuse(ep.episode_id, ep.actor_id[:MAX_ID_CHARS], ep.group_id[:MAX_ID_CHARS], "invalid")
            raise
        with self._cv:
            if self._known(ep.episode_id):
                return "duplicate"
            try:
                check_versions(ep, learner_version, self.cfg.max_staleness, self.cfg.stale_policy == "drop")
            except Unacceptable as e:
                if self.grouped:
                    self._shrink_group(ep)
                if self.ledger is not None:
                    self.ledger.refuse(ep.episode_id, ep.actor_id, ep.group_id, e.reason)
                raise
            if self._count >= self.cfg.buffer_capacity:
                raise BufferFull(f"buffer full ({self._count}/{self.cfg.buffer_capacity} episodes)")
            if self.ledger is not None:  # on disk before anyone acknowledges it
                self.ledger.accept(ep.episode_id, ep.actor_id, ep.group_id, ep.SerializeToString())
            now = self._clock()
            self._group_of(ep, now).members.append(Buffered(ep, now))
            self._count += 1
            self._remember(ep.episode_id)
            self._cv.notify_all()
            return "accepted"

    def _group_of(self, ep: trajectory_pb2.Episode, now: float) -> _Group:
        """The group ``ep`` belongs to (GRPO: its group_id; PPO: a group of its own), created on first sight."""
        key = ep.group_id if self.grouped else ep.episode_id
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(size=max(1, ep.group_size) if self.grouped else 1, created=now,
                                               actor_id=ep.actor_id)
        return group

    def _shrink_group(self, ep: trajectory_pb2.Episode) -> None:
        """A member refused on arrival will never come: its group completes without it (not after a timeout)."""
        group = self._group_of(ep, self._clock())
        group.size -= 1
        group.dropped += 1
        self._remember(ep.episode_id)   # a resend is a duplicate, not a second missing member
        if not group.members and group.size <= 0:
            del self._groups[ep.group_id]
        self._cv.notify_all()

    def close_groups(self, actor_id: str) -> tuple[int, int]:
        """``actor_id`` (re)started: its incomplete groups get no more members. Those with >= 2 members become
        complete as they are, lone members are dropped (``incomplete_group``). Returns (closed, dropped)."""
        closed = dropped = 0
        with self._cv:
            if not self.grouped:
                return 0, 0
            for key, g in list(self._groups.items()):
                if g.actor_id != actor_id or len(g.members) >= g.size:
                    continue
                if len(g.members) >= 2:
                    g.size = len(g.members)
                    closed += 1
                else:
                    dropped += len(g.members)
                    self._drop_group(key)
            self._cv.notify_all()
        return closed, dropped

    def _known(self, episode_id: str) -> bool:
        return episode_id in self._seen or (self.ledger is not None and self.ledger.known(episode_id))

    def _remember(self, episode_id: str) -> None:
        self._seen[episode_id] = None
        while len(self._seen) > self.cfg.dedup_window:
            self._seen.popitem(last=False)

    # ---- consumer side -------------------------------------------------
    def take(self, n: int, learner_version: int, timeout: float | None = None) -> list[Buffered] | None:
        """Whole ready groups, oldest first, until >= n episodes; None if not enough arrived in time."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cv:
            while True:
                batch = self._try_take(n, learner_version)
                if batch is not None:
                    return batch
                left = None if deadline is None else deadline - self._clock()
                if left is not None and left <= 0:
                    return None
                self._cv.wait(timeout=min(left, 1.0) if left is not None else 1.0)

    def _try_take(self, n: int, version: int) -> list[Buffered] | None:
        now = self._clock()
        for key, g in list(self._groups.items()):   # sweep: staleness, timeouts
            self._apply_staleness(key, g, version)
            if key not in self._groups or not self.grouped:
                continue
            timed_out = now - g.created >= self.cfg.group_timeout_s
            complete = len(g.members) >= g.size
            if len(g.members) < 2 and (timed_out or (complete and g.dropped)):
                self._drop_group(key)  # a lone GRPO member has zero advantage
        ready: list[str] = []
        total = 0
        for key, g in self._groups.items():
            timed_out = now - g.created >= self.cfg.group_timeout_s
            if len(g.members) >= g.size or (timed_out and len(g.members) >= 2):
                ready.append(key)
                total += len(g.members)
                if total >= n:
                    break
        if total < n:
            return None
        batch = [b for key in ready for b in self._groups.pop(key).members]
        self._count -= len(batch)
        self.consumed += len(batch)
        return batch

    def _apply_staleness(self, key: str, g: _Group, version: int) -> None:
        keep, dropped = [], []
        for b in g.members:
            lag = version - min(t.policy_version for t in b.episode.turns)
            b.lag = lag
            over = lag - self.cfg.max_staleness
            if over <= 0:
                b.weight = 1.0
            elif self.cfg.stale_policy == "downweight":
                b.weight = self.cfg.stale_weight**over
            else:
                self.dropped_stale += 1
                dropped.append(b.episode.episode_id)
                self._count -= 1
                g.size -= 1          # it arrived; the group will not get it again
                g.dropped += 1
                continue
            keep.append(b)
        g.members = keep
        if dropped:
            self._dropped(dropped, "dropped_stale")
        if not keep and (g.size <= 0 or not self.grouped):
            del self._groups[key]

    def _drop_group(self, key: str) -> None:
        g = self._groups.pop(key)
        self._count -= len(g.members)
        self.dropped_incomplete += len(g.members)
        self._dropped([b.episode.episode_id for b in g.members], "incomplete_group")

    def _dropped(self, episode_ids: list[str], reason: str) -> None:
        if not episode_ids:
            return
        if self.ledger is not None:
            self.ledger.drop(episode_ids, reason)
        if self.on_drop is not None:
            self.on_drop(reason, len(episode_ids))

    # ---- introspection and checkpointing -------------------------------
    @property
    def buffered(self) -> int:
        with self._cv:
            return self._count

    @property
    def ready(self) -> int:
        """Buffered episodes in groups ``take`` could hand out now (complete, or timed out with >= 2)."""
        with self._cv:
            if not self.grouped:
                return self._count
            now = self._clock()
            return sum(len(g.members) for g in self._groups.values()
                       if len(g.members) >= g.size or (now - g.created >= self.cfg.group_timeout_s and len(g.members) >= 2))

    def state_dict(self) -> dict:
        """Seen ids, waiting episodes (serialized) and counters: restoring it loses and repeats nothing."""
        with self._cv:
            pending = [b.episode.SerializeToString() for g in self._groups.values() for b in g.members]
            return {
                "seen": list(self._seen),
                "pending": pending,
                "consumed": self.consumed,
                "dropped_stale": self.dropped_stale,
                "dropped_incomplete": self.dropped_incomplete,
            }

    def load_state_dict(self, state: dict, pending: list[bytes] | None = None) -> None:
        """Restore a checkpoint's buffer state; ``pending`` (from the ledger) replaces its waiting episodes."""
        with self._cv:
            self._groups.clear()
            self._seen = OrderedDict((i, None) for i in state["seen"])
            self._count = 0
            self._restore_pending(state["pending"] if pending is None else pending)
            self.consumed = state["consumed"]
            self.dropped_stale = state["dropped_stale"]
            self.dropped_incomplete = state["dropped_incomplete"]
            self._cv.notify_all()

    def restore_pending(self, pending: list[bytes]) -> None:
        """Put episodes back that were acknowledged but not trained in the surviving lineage (ledger.restore)."""
        with self._cv:
            self._restore_pending(pending)
            self._cv.notify_all()

    def _restore_pending(self, pending: list[bytes]) -> None:
        now = self._clock()
        for raw in pending:
            ep = trajectory_pb2.Episode.FromString(raw)
            self._group_of(ep, now).members.append(Buffered(ep, now))
            self._count += 1
