"""The learner's real TrajectoryService + WeightService on a loopback RpcServer, without training.

Tests publish weight versions by hand (``publish``) and read the buffer the
actor filled. ``lose_acks`` wraps the real Push: the episodes reach the real
buffer, then the call fails with UNAVAILABLE, as when a connection drops
before the ack arrives, so the actor must resend and the learner dedup.
"""
from __future__ import annotations

import grpc
import numpy as np

from atlasrl.learner.buffer import EpisodeBuffer
from atlasrl.learner.config import LearnerConfig
from atlasrl.learner.metrics import LearnerMetrics
from atlasrl.learner.trajectory_service import TrajectoryServicer
from atlasrl.learner.weight_service import WeightServicer
from atlasrl.metrics import Metrics
from atlasrl.rpc import RpcServer, ServerConfig
from atlasrl.rpc.errors import ServiceError
from atlasrl.v1 import trajectory_pb2, weights_pb2
from atlasrl.weight_codec import TensorBlob, encode_version


class LossyTrajectoryServicer(TrajectoryServicer):
    lose_acks = 0

    async def Push(self, requests, context):
        ack = await super().Push(requests, context)
        if self.lose_acks > 0:
            self.lose_acks -= 1
            raise ServiceError("connection lost before the ack (test)", grpc.StatusCode.UNAVAILABLE)
        return ack


class LearnerEndpoint:
    def __init__(self, vocab_size: int = 100_000, port: int = 0, **cfg):
        self.cfg = LearnerConfig(**{"model": "unused-by-the-services", **cfg})
        self.version = 0
        self.metrics = LearnerMetrics(Metrics("test_learner"))
        self.buffer = EpisodeBuffer(self.cfg, vocab_size=vocab_size)
        self.trajectories = LossyTrajectoryServicer(self.buffer, lambda: self.version, self.metrics)
        self.weights = WeightServicer(self.metrics)
        self.server = RpcServer(ServerConfig(port=port), self.metrics.metrics)
        self.server.add(self.trajectories, trajectory_pb2.DESCRIPTOR.services_by_name["TrajectoryService"])
        self.server.add(self.weights, weights_pb2.DESCRIPTOR.services_by_name["WeightService"])

    async def start(self) -> LearnerEndpoint:
        await self.server.start()
        return self

    @property
    def address(self) -> str:
        return self.server.address

    async def publish(self, version: int, named: dict[str, np.ndarray]) -> None:
        msgs = encode_version(version, [TensorBlob.from_numpy(k, v) for k, v in named.items()])
        await self.weights.publish(msgs)
        self.version = version

    def episodes(self) -> list[trajectory_pb2.Episode]:
        with self.buffer._cv:
            return [b.episode for g in self.buffer._groups.values() for b in g.members]

    async def stop(self) -> None:
        await self.server.stop(0)
