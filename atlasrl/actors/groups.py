"""Seed schedule: which env seed (and GRPO group) the next episode plays.

    seeds = SeedSchedule(actor_id="a0", group_size=4, seed_start=0)
    group_id, seed = seeds.next()      # 4 calls in a row give the same seed and group id
    seeds.give_back(group_id, seed)    # a dropped episode: its group still needs one rollout

A GRPO group is G rollouts of the same env seed; the learner compares them with
each other, so a group must end up with G episodes even when one is dropped
(env server died): a dropped slot goes back to the front of the queue and the
next reset plays it again. ``limit`` bounds the number of distinct seeds (eval).
"""
from __future__ import annotations

from collections import deque


class SeedSchedule:
    def __init__(self, actor_id: str, group_size: int = 1, seed_start: int = 0, limit: int | None = None):
        if group_size < 1:
            raise ValueError("group_size must be >= 1")
        self.actor_id = actor_id
        self.group_size = group_size
        self.next_seed = seed_start
        self.end = None if limit is None else seed_start + limit
        self._queue: deque[tuple[str, int]] = deque()
        self._returned: deque[tuple[str, int]] = deque()

    def next(self) -> tuple[str, int] | None:
        """(group_id, seed) for the next episode; None once ``limit`` seeds were handed out."""
        if self._returned:
            return self._returned.popleft()
        if not self._queue:
            if self.end is not None and self.next_seed >= self.end:
                return None
            seed = self.next_seed
            self.next_seed += 1
            gid = f"{self.actor_id}/seed-{seed}"
            self._queue.extend((gid, seed) for _ in range(self.group_size))
        return self._queue.popleft()

    @property
    def starts_group(self) -> bool:
        """Whether next() opens a new group (not a member of one already begun, nor a retry)."""
        return not self._returned and not self._queue

    def give_back(self, group_id: str, seed: int) -> None:
        self._returned.append((group_id, seed))

    @property
    def exhausted(self) -> bool:
        return not self._returned and not self._queue and self.end is not None and self.next_seed >= self.end
