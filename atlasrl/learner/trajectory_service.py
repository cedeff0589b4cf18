"""TrajectoryService servicer: actors push finished episodes into the learner's buffer.

Every episode of a Push stream gets exactly one outcome in the PushAck:
accepted or duplicate (listed in ``acked_ids``: the actor may forget it),
rejected for good (``rejected`` with INVALID_ARGUMENT for malformed data and
FAILED_PRECONDITION for staleness / unknown versions), or - when the buffer is
full - nothing, so the actor keeps it and resends later. A message that does
not even parse is rejected with an empty episode_id and the stream goes on.
Every rejection carries a ``reason`` for episode accounting; the log gets the
first of each reason and then one summary line per interval, not one per episode.
With a ledger, an acknowledged episode is already on disk (``EpisodeBuffer.add``).
CloseGroups: an actor that (re)starts closes the groups its earlier process left incomplete.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from atlasrl.learner.buffer import BufferFull, EpisodeBuffer
from atlasrl.learner.metrics import LearnerMetrics
from atlasrl.learner.validation import Malformed, Unacceptable
from atlasrl.log import ReasonSummary
from atlasrl.rpc import FailedPrecondition, InvalidArgument, MalformedRequest, to_status_msg
from atlasrl.v1 import trajectory_pb2

log = logging.getLogger("atlasrl.learner.trajectory")


class TrajectoryServicer:
    def __init__(self, buffer: EpisodeBuffer, version: Callable[[], int], metrics: LearnerMetrics):
        self.buffer = buffer
        self.version = version
        self.m = metrics
        self.refusals = ReasonSummary(log, "refused episodes", level=logging.INFO)

    async def Push(self, requests, context) -> trajectory_pb2.PushAck:
        ack = trajectory_pb2.PushAck()
        while True:
            try:
                ep = await requests.__anext__()
            except StopAsyncIteration:
                break
            except MalformedRequest as e:
                self._reject(ack, "", e, "malformed", "unparseable")
                continue
            self._ingest(ep, ack)
        ack.learner_version = self.version()
        self.m.buffered.set(self.buffer.buffered)
        return ack

    def _ingest(self, ep: trajectory_pb2.Episode, ack: trajectory_pb2.PushAck) -> None:
        try:
            outcome = self.buffer.add(ep, self.version())
        except Malformed as e:
            self._reject(ack, ep.episode_id, InvalidArgument(f"episode {ep.episode_id!r}: {e}"), "invalid", "invalid")
            return
        except Unacceptable as e:
            self._reject(ack, ep.episode_id, FailedPrecondition(f"episode {ep.episode_id!r}: {e}"), "unacceptable", e.reason)
            return
        except BufferFull:
            self.m.episodes.labels("deferred").inc()
            return
        if outcome == "accepted":
            ack.accepted += 1
        else:
            ack.duplicates += 1
        ack.acked_ids.append(ep.episode_id)
        self.m.episodes.labels(outcome).inc()

    def _reject(self, ack: trajectory_pb2.PushAck, episode_id: str, exc: Exception, outcome: str, reason: str) -> None:
        ack.rejected.add(episode_id=episode_id, status=to_status_msg(exc), reason=reason)
        self.m.episodes.labels(outcome).inc()
        self.m.count_refused(reason)
        self.refusals.add(reason, str(exc))

    async def CloseGroups(self, request, context) -> trajectory_pb2.CloseGroupsReply:
        if not request.actor_id:
            raise InvalidArgument("actor_id is empty; CloseGroups closes the open groups of one actor")
        closed, dropped = self.buffer.close_groups(request.actor_id)
        if closed or dropped:
            log.info("actor %s restarted: %d of its incomplete groups train with the members they have, "
                     "%d lone members dropped", request.actor_id, closed, dropped)
        self.m.buffered.set(self.buffer.buffered)
        return trajectory_pb2.CloseGroupsReply(closed=closed, dropped=dropped)

    async def GetInfo(self, request, context) -> trajectory_pb2.TrajectoryInfo:
        cfg = self.buffer.cfg
        return trajectory_pb2.TrajectoryInfo(
            version=self.version(),
            buffered=self.buffer.buffered,
            capacity=cfg.buffer_capacity,
            max_staleness=cfg.max_staleness,
            consumed=self.buffer.consumed,
            ready=self.buffer.ready,
            batch_episodes=cfg.batch_episodes,
            wants_bootstrap=cfg.algo == "ppo",   # GAE bootstraps cut episodes from the value head
        )
