"""A small TrajectoryService for tests, served over real gRPC by RpcServer.

It does what the contract asks of a learner (dedup on episode_id, ack every
episode, reject malformed ones) and records what arrived, so tests can check
the actor's side. ``lose_acks`` makes the next N pushes store their episodes and
then fail with UNAVAILABLE, as when a connection drops before the ack arrives.
Replace by the learner's real TrajectoryService in tests once it exists.
"""
from __future__ import annotations

import grpc

from atlasrl.metrics import Metrics
from atlasrl.rpc import MalformedRequest, RpcServer, ServerConfig
from atlasrl.rpc.errors import ServiceError
from atlasrl.v1 import common_pb2, trajectory_pb2

SERVICE = trajectory_pb2.DESCRIPTOR.services_by_name["TrajectoryService"]


class RecordingLearner:
    def __init__(self, version: int = 0, max_staleness: int = 4):
        self.episodes: dict[str, trajectory_pb2.Episode] = {}
        self.receptions = 0          # episodes received, duplicates included
        self.lose_acks = 0
        self.version = version
        self.max_staleness = max_staleness
        self.events: list[tuple[str, str]] = []   # ("push", episode_id) per reception, ("close", actor_id)

    async def Push(self, requests, context):
        ack = trajectory_pb2.PushAck()
        while True:
            try:
                ep = await requests.__anext__()
            except StopAsyncIteration:
                break
            except MalformedRequest:
                continue
            self.receptions += 1
            self.events.append(("push", ep.episode_id))
            refusal = self.refusal(ep)
            if refusal is not None:
                ack.rejected.add(episode_id=ep.episode_id, **refusal)
                continue
            if ep.episode_id in self.episodes:
                ack.duplicates += 1
            else:
                self.episodes[ep.episode_id] = ep
                ack.accepted += 1
            ack.acked_ids.append(ep.episode_id)
        ack.learner_version = self.version
        if self.lose_acks > 0:
            self.lose_acks -= 1
            raise ServiceError("ack lost (test)", grpc.StatusCode.UNAVAILABLE)
        return ack

    def refusal(self, ep: trajectory_pb2.Episode) -> dict | None:
        """RejectedEpisode fields (status, reason) to refuse ``ep`` with, or None to accept it."""
        if not ep.episode_id or not ep.turns:
            return {"status": common_pb2.Status(code=3, message="episode has no id or no turns"), "reason": "invalid"}
        return None

    async def CloseGroups(self, request, context):
        self.events.append(("close", request.actor_id))
        return trajectory_pb2.CloseGroupsReply()

    async def GetInfo(self, request, context):
        return trajectory_pb2.TrajectoryInfo(
            version=self.version, buffered=len(self.episodes), capacity=10_000, max_staleness=self.max_staleness
        )


async def serve_learner(port: int = 0, learner: RecordingLearner | None = None) -> tuple[RpcServer, RecordingLearner]:
    learner = learner or RecordingLearner()
    server = RpcServer(ServerConfig(port=port), Metrics("test_learner"))
    server.add(learner, SERVICE)
    await server.start()
    return server, learner
