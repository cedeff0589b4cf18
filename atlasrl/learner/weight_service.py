"""WeightService servicer: holds the latest weight version and streams it to every subscriber.

The learner publishes in-process (``publish``); a remote publisher may use the
Publish RPC with the learner's token. A version is encoded and serialized once
(begin, 1-4 MiB parts, end) and the same bytes go to every subscriber. A subscriber gets the
latest version right away when it is newer than ``after_version``, then each
newer one; a slow subscriber skips versions that were superseded while it was
still receiving (weights conflate: only the newest matters).
"""
from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass

from atlasrl.learner.metrics import LearnerMetrics
from atlasrl.rpc import FailedPrecondition, InvalidArgument, MalformedRequest, NotFound
from atlasrl.rpc.errors import PermissionDenied
from atlasrl.v1 import weights_pb2
from atlasrl.weight_codec import VersionAssembler, WeightStreamError

log = logging.getLogger("atlasrl.learner.weights")


class _Serialized:
    """A WeightUpdate serialized once; gRPC's response serializer calls SerializeToString on it."""

    __slots__ = ("data",)

    def __init__(self, msg: weights_pb2.WeightUpdate):
        self.data = msg.SerializeToString()

    def SerializeToString(self) -> bytes:  # the protobuf method name gRPC calls
        return self.data


def serialize(messages: list[weights_pb2.WeightUpdate]) -> tuple[_Serialized, ...]:
    return tuple(_Serialized(m) for m in messages)


@dataclass(frozen=True)
class Published:
    version: int
    manifest: weights_pb2.WeightManifest
    messages: tuple[_Serialized, ...]   # serialized once, sent to every subscriber


class WeightServicer:
    def __init__(self, metrics: LearnerMetrics, publish_token: str | None = None, guarded: bool = False):
        self.m = metrics
        self.publish_token = publish_token
        self.guarded = guarded   # the server's token guard admits only the learner role to Publish
        self.latest: Published | None = None
        self._changed = asyncio.Condition()
        self._subscribers = 0

    async def publish(self, messages: list[weights_pb2.WeightUpdate]) -> int:
        """Make an encoded version (from ``encode_version``) the latest; returns its number."""
        return await self.publish_serialized(messages[0].begin, serialize(messages))

    async def publish_serialized(self, manifest: weights_pb2.WeightManifest, messages: tuple[_Serialized, ...]) -> int:
        """Same, with messages already serialized (by the training thread, so this loop never blocks on it)."""
        if self.latest is not None and manifest.version <= self.latest.version:
            raise FailedPrecondition(f"version {manifest.version} is not newer than the latest {self.latest.version}")
        async with self._changed:
            self.latest = Published(manifest.version, manifest, messages)
            self._changed.notify_all()
        return manifest.version

    async def Subscribe(self, request: weights_pb2.SubscribeRequest, context):
        sent = request.after_version
        who = request.subscriber_id or context.peer()
        self._subscribers += 1
        self.m.subscribers.set(self._subscribers)
        try:
            while True:
                async with self._changed:
                    await self._changed.wait_for(lambda: self.latest is not None and self.latest.version > sent)  # noqa: B023 - awaited within this iteration
                    pub = self.latest
                assert pub is not None  # wait_for waited for one
                for msg in pub.messages:
                    yield msg
                self.m.sent_bytes.inc(pub.manifest.total_bytes)
                sent = pub.version
                log.debug("sent version %d to %s", sent, who)
        finally:
            self._subscribers -= 1
            self.m.subscribers.set(self._subscribers)

    async def Publish(self, requests, context) -> weights_pb2.PublishAck:
        self._authorize(context)
        asm = VersionAssembler()
        msgs: list[weights_pb2.WeightUpdate] = []
        done = None
        while True:
            try:
                msg = await requests.__anext__()
            except StopAsyncIteration:
                break
            except MalformedRequest as e:
                raise InvalidArgument(f"Publish message {len(msgs)}: {e}") from None
            if done is not None:
                raise InvalidArgument(f"messages after the end of version {done.version}; publish one version per call")
            try:
                done = asm.feed(msg)
            except WeightStreamError as e:
                raise InvalidArgument(f"Publish message {len(msgs)}: {e}") from None
            msgs.append(msg)
        if done is None:
            raise InvalidArgument("Publish stream closed before the version's end message")
        return weights_pb2.PublishAck(version=await self.publish(msgs))

    def _authorize(self, context) -> None:
        if self.guarded and not self.publish_token:
            return   # the RpcServer token guard already checked the caller's role (rpc/security.py)
        if not self.publish_token:
            raise PermissionDenied("remote Publish is disabled on this learner (no publish token configured)")
        md = dict(context.invocation_metadata() or ())
        given = md.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.publish_token}".encode()):
            raise PermissionDenied("Publish needs the learner's token in 'authorization: Bearer <token>'")

    async def GetLatest(self, request, context) -> weights_pb2.WeightManifest:
        if self.latest is None:
            raise NotFound("no weight version has been published yet")
        return self.latest.manifest
