"""TrajectorySender: at-least-once delivery of finished episodes to the learner.

    sender = TrajectorySender("127.0.0.1:50052", max_buffered=256)
    await sender.start()
    await sender.put(episode)        # waits while the buffer is full: backpressure
    await sender.flush(timeout=30)   # until every episode was acked or rejected
    await sender.close()

Every episode stays in the buffer until a ``PushAck`` lists it (accepted or
duplicate) or rejects it for good. A failed ``Push`` (learner down, connection
cut before the ack) is retried with exponential backoff, resending the same
episodes; the learner deduplicates on ``episode_id``, so nothing is lost or
counted twice. While the learner is unreachable the buffer fills up to
``max_buffered`` and then ``put`` blocks, which pauses the actor's generation
until the learner is back.

Every episode put() ends in exactly one outcome, counted by the sender's ledger
(``spool``, see atlasrl/clients/spool.py): acked, refused (with the learner's
reason) or lost (the sender closed before an ack). With an ``EpisodeSpool`` the
ledger is an SQLite file that survives a killed actor: episodes it left unacked
are queued first when the next one starts, and re-sent. Without one the counts
live in memory only. With an ``actor_id``, the sender tells the learner once at start
(``CloseGroups``), after the re-sent episodes are settled and before any new one,
that the groups this actor's earlier process left incomplete get no more members:
they train with what they have instead of waiting ``group_timeout_s`` as untrained
backlog (which the actor's admission control would wait on). Refusals are logged as a summary, not one line each: the
first of each reason with its message, then at most one line per
``refusal_log_interval_s`` with the count per reason since the previous line.
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass

import grpc

from atlasrl.clients.spool import EpisodeLedger
from atlasrl.log import ReasonSummary
from atlasrl.rpc import ChannelConfig, make_channel
from atlasrl.rpc.retry import Backoff
from atlasrl.v1 import trajectory_pb2, trajectory_pb2_grpc

log = logging.getLogger("atlasrl.clients.trajectory")


@dataclass
class SenderStats:
    """Counters of the delivery since start (all episodes, not bytes). Outcomes per episode (acked, refused and
    lost by reason, resent) are the ledger's: ``sender.spool.total(outcome)``, ``sender.spool.by_reason(outcome)``."""

    queued: int = 0        # put() calls accepted into the buffer (new episodes, recorded as generated)
    accepted: int = 0      # acked as newly added by the learner
    duplicates: int = 0    # acked as already received (a retried send)
    rejected: int = 0      # refused for good (malformed, too stale), all reasons
    push_failures: int = 0  # Push RPCs that failed and were retried
    pushes: int = 0        # Push RPCs that returned an ack
    unattributed_refusals: int = 0  # rejections without an episode id (a message the learner could not parse)


_INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
_FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION.value[0]


def refusal_reason(rej: trajectory_pb2.RejectedEpisode) -> str:
    """RejectedEpisode.reason, or for learners that send none, derived from the status code."""
    reason = getattr(rej, "reason", "")
    if reason:
        return reason
    if not rej.episode_id:
        return "unparseable"
    if rej.status.code == _INVALID_ARGUMENT:
        return "invalid"
    if rej.status.code == _FAILED_PRECONDITION:
        return "unknown_version" if "newer than" in rej.status.message else "stale"
    return "other"


class TrajectorySender:
    def __init__(
        self,
        target: str,
        *,
        max_buffered: int = 256,
        batch_size: int = 16,
        push_timeout_s: float = 30.0,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        channel_config: ChannelConfig | None = None,
        spool: EpisodeLedger | None = None,
        refusal_log_interval_s: float = 10.0,
        actor_id: str | None = None,
    ):
        if max_buffered < 1 or batch_size < 1:
            raise ValueError("max_buffered and batch_size must be >= 1")
        self.target = target
        self.max_buffered = max_buffered
        self.batch_size = batch_size
        self.push_timeout_s = push_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stats = SenderStats()
        self.learner_version: int = -1
        """Learner's policy version from the latest ack or GetInfo (-1 = unknown)."""
        self.connected = False
        """Whether the latest Push or GetInfo reached the learner."""
        self.last_error: str = ""
        self._channel_config = channel_config
        self._pending: OrderedDict[str, trajectory_pb2.Episode] = OrderedDict()
        self._changed = asyncio.Condition()
        self._task: asyncio.Task | None = None
        self._channel = None
        self._stub: trajectory_pb2_grpc.TrajectoryServiceStub | None = None
        self._closing = False
        self.spool = spool if spool is not None else EpisodeLedger()
        """Episode accounting (the sender closes it): an EpisodeSpool file, or in-memory counts."""
        self._refusals = ReasonSummary(log, "learner refused episodes", every_s=refusal_log_interval_s)
        self.actor_id = actor_id
        self.groups_closed = actor_id is None
        """Whether CloseGroups(actor_id) reached the learner (True at once without an actor id)."""
        self._resend_first: set[str] = set()   # recovered episode ids not settled yet

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> TrajectorySender:
        # Episodes an earlier incarnation left unacked go first (the learner drops those it already holds).
        for ep in self.spool.recovered:
            self._pending.setdefault(ep.episode_id, ep)
            self._resend_first.add(ep.episode_id)
        self.spool.recovered = []
        self._channel = make_channel(self.target, self._channel_config)
        self._stub = trajectory_pb2_grpc.TrajectoryServiceStub(self._channel)
        self._task = asyncio.create_task(self._deliver_forever(), name="trajectory-sender")
        return self

    async def close(self, flush_timeout_s: float | None = 0.0) -> None:
        """Stop delivering; with a timeout > 0, first try to flush what is buffered."""
        if flush_timeout_s:
            try:
                await self.flush(flush_timeout_s)
            except TimeoutError:
                log.warning("closing with %d unacked episodes (%s)", len(self._pending),
                            "kept in the spool for the next start" if self.spool.durable and self.spool.keep_payloads
                            else "counted lost: actor_stopped")
        async with self._changed:
            self._closing = True
            self._changed.notify_all()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing: whatever the cancelled task ended with is not our error
                pass
        if self._channel is not None:
            await self._channel.close()
        self._refusals.flush()
        # Still unacked: kept in the spool for the next start, or counted lost (actor_stopped).
        self.spool.close(list(self._pending))

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.close()

    # -- producer side -----------------------------------------------------
    @property
    def buffered(self) -> int:
        """Episodes not yet acked (in flight included)."""
        return len(self._pending)

    @property
    def full(self) -> bool:
        return len(self._pending) >= self.max_buffered

    async def put(self, episode: trajectory_pb2.Episode) -> None:
        """Queue an episode; waits while ``max_buffered`` episodes are unacked."""
        if not episode.episode_id:
            raise ValueError("episode has no episode_id; the learner deduplicates on it")
        async with self._changed:
            await self._changed.wait_for(lambda: not self.full or self._closing)
            if self._closing:
                raise RuntimeError("TrajectorySender is closed")
            if episode.episode_id not in self._pending and self.spool.generated(episode):
                self._pending[episode.episode_id] = episode
                self.stats.queued += 1
            self._changed.notify_all()

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued episode was acked or rejected."""

        async def _empty():
            async with self._changed:
                await self._changed.wait_for(lambda: not self._pending)

        await asyncio.wait_for(_empty(), timeout)

    async def get_info(self, timeout: float = 5.0) -> trajectory_pb2.TrajectoryInfo:
        """The learner's flow-control state (version, buffer room, max staleness)."""
        assert self._stub is not None, "call start() first"
        info = await self._stub.GetInfo(trajectory_pb2.TrajectoryInfoRequest(), timeout=timeout)
        self.learner_version = info.version
        self.connected = True
        return info

    # -- delivery ----------------------------------------------------------
    async def _deliver_forever(self) -> None:
        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s)
        while True:
            if not self.groups_closed:      # start-up only: afterwards the loop does no extra work per push
                self._resend_first &= self._pending.keys()
                if not self._resend_first:
                    await self._close_earlier_groups(backoff)
                    continue
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self._pending))
                # Until CloseGroups went through, only the re-sent episodes (recovered first, so a prefix).
                first = self._pending.values() if self.groups_closed else \
                    (ep for ep in self._pending.values() if ep.episode_id in self._resend_first)
                batch = [ep for _, ep in zip(range(self.batch_size), first)]
            assert self._stub is not None  # start() set it before starting this task
            try:
                ack = await self._stub.Push(iter(batch), timeout=self.push_timeout_s)
            except grpc.aio.AioRpcError as e:
                self.stats.push_failures += 1
                self.connected = False
                self.last_error = f"{e.code().name}: {e.details()}"
                delay = await backoff.sleep()
                log.info("push of %d episodes failed (%s); retried after %.2fs", len(batch), self.last_error, delay)
                continue
            self.connected = True
            if await self._apply_ack(ack, batch):
                backoff.reset()
            else:
                # The learner neither acked nor rejected some episodes (its buffer is
                # full): keep them and offer them again after a growing pause.
                await backoff.sleep()

    async def _close_earlier_groups(self, backoff: Backoff) -> None:
        """CloseGroups(actor_id), retried with backoff until the learner answers (see the module doc)."""
        assert self._stub is not None and self.actor_id is not None
        try:
            reply = await self._stub.CloseGroups(trajectory_pb2.CloseGroupsRequest(actor_id=self.actor_id),
                                                 timeout=self.push_timeout_s)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:   # an older learner: its group timeout closes them
                log.warning("the learner has no CloseGroups; groups an earlier process of %s left incomplete "
                            "wait for its group timeout", self.actor_id)
                self.groups_closed = True
                return
            self.connected = False
            self.last_error = f"{e.code().name}: {e.details()}"
            delay = await backoff.sleep()
            log.info("CloseGroups failed (%s); retried after %.2fs", self.last_error, delay)
            return
        self.connected, self.groups_closed = True, True
        backoff.reset()
        if reply.closed or reply.dropped:
            log.info("learner closed %d groups an earlier process of %s left incomplete (%d lone members dropped)",
                     reply.closed, self.actor_id, reply.dropped)

    async def _apply_ack(self, ack: trajectory_pb2.PushAck, batch: list[trajectory_pb2.Episode]) -> bool:
        """Forget what the ack settled; True when every episode of the batch was settled."""
        self.stats.pushes += 1
        self.stats.accepted += ack.accepted
        self.stats.duplicates += ack.duplicates
        self.learner_version = ack.learner_version
        async with self._changed:
            acked = [eid for eid in ack.acked_ids if self._pending.pop(eid, None) is not None]
            self.spool.acked(acked)
            for rej in ack.rejected:
                reason = refusal_reason(rej)
                if self._pending.pop(rej.episode_id, None) is not None:
                    self.spool.refused(rej.episode_id, reason)
                    self.stats.rejected += 1
                elif rej.episode_id:
                    continue  # refused again after a resend: settled already
                else:
                    self.stats.unattributed_refusals += 1
                self._refusals.add(reason, f"episode {rej.episode_id or '<unparsed>'}: {rej.status.message}")
            self._changed.notify_all()
        return not any(ep.episode_id in self._pending for ep in batch)

