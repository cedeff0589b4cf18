"""WeightService servicer: holds the latest weight version and sends it to every subscriber by the transport it
negotiated (atlasrl/weights/: stream, delta or collective).

The learner publishes in-process (``prepare`` in the training thread, then ``publish_prepared`` on the serving
loop); a remote publisher may use the Publish RPC with the learner's token. A version is encoded and serialized
once (begin, 1-4 MiB parts, end) and the same bytes go to every subscriber; with the delta transport offered,
a second encoding of it as its difference from the previous version + zstd-1 is made once too.

- STREAM subscribers get the latest version right away when it is newer than ``after_version``, then each
  newer one; a slow subscriber skips versions superseded while it was still receiving (weights conflate).
- DELTA subscribers get the delta when they hold its base (``have_version``, then whatever this stream last
  sent them), otherwise the full version: a subscriber that skipped a version is resynced in full.
- COLLECTIVE subscribers get the latest full version on the stream first (to start from), then join the
  learner's weight group (``CollectiveHub``): each version is announced on the stream and broadcast.

A transport this learner does not offer (``weight_transports``) is refused with FAILED_PRECONDITION naming
the key; ``Negotiate`` tells subscribers beforehand.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass

from atlasrl.learner.metrics import LearnerMetrics
from atlasrl.rpc import FailedPrecondition, InvalidArgument, MalformedRequest, NotFound
from atlasrl.rpc.errors import PermissionDenied, Unavailable
from atlasrl.v1 import weights_pb2
from atlasrl.weight_codec import (
    EncodedVersion,
    MiB,
    TensorBlob,
    VersionAssembler,
    WeightStreamError,
    encode_delta,
    encode_frames,
)
from atlasrl.weights.transport import TRANSPORT_NAMES, transport_name, transport_proto

log = logging.getLogger("atlasrl.learner.weights")


class _Serialized:
    """A serialized WeightUpdate; gRPC's response serializer calls SerializeToString on it."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data

    def SerializeToString(self) -> bytes:  # the protobuf method name gRPC calls
        return self.data


@dataclass(frozen=True)
class Published:
    version: int
    manifest: weights_pb2.WeightManifest
    full: EncodedVersion                   # serialized once, sent to every subscriber
    delta: EncodedVersion | None = None    # the same version as a delta against base_version (delta transport)

    @property
    def messages(self) -> tuple[_Serialized, ...]:
        return tuple(_Serialized(f) for f in self.full.frames)


class WeightServicer:
    def __init__(self, metrics: LearnerMetrics, publish_token: str | None = None, guarded: bool = False,
                 transports: tuple[str, ...] = ("stream", "delta"), hub=None, chunk_bytes: int = 4 * MiB):
        self.m = metrics
        self.publish_token = publish_token
        self.guarded = guarded   # the server's token guard admits only the learner role to Publish
        for t in transports:
            if t not in TRANSPORT_NAMES:
                raise ValueError(f"learner.weight_transports: unknown transport {t!r} (known: {', '.join(TRANSPORT_NAMES)})")
        if "collective" in transports and hub is None:
            raise ValueError("learner.weight_transports offers collective but no weight group was set up")
        self.transports = tuple(transports)
        self.hub = hub                      # atlasrl.weights.collective.CollectiveHub when collective is offered
        self.chunk_bytes = chunk_bytes
        self.latest: Published | None = None
        self._changed = asyncio.Condition()
        self._subscribers = 0
        self._delta_subscribers = 0   # deltas are encoded only while someone takes them

    # ------------------------------------------------------------ publishing
    def prepare(self, version: int, blobs: list[TensorBlob], base: Published | None = None) -> Published:
        """Encode one version (any thread; the training thread in the learner): the full frames and, with the
        delta transport offered, the delta against ``base`` (default: the latest published)."""
        full = encode_frames(version, blobs, self.chunk_bytes)
        return self.prepare_encoded(full, base)

    def prepare_encoded(self, full: EncodedVersion, base: Published | None = None) -> Published:
        base = base if base is not None else self.latest
        delta = None
        if "delta" in self.transports and self._delta_subscribers and base is not None and base.version < full.version:
            delta = encode_delta(full, base.full, self.chunk_bytes)
        return Published(full.version, full.manifest, full, delta)

    async def publish(self, messages: list[weights_pb2.WeightUpdate]) -> int:
        """Make an encoded version (from ``encode_version``) the latest; returns its number."""
        frames = [m.SerializeToString() for m in messages]
        asm = VersionAssembler()
        wv = None
        for f in frames:
            wv = asm.feed(f) or wv
        assert wv is not None, "messages without an end"
        full = EncodedVersion(messages[0].begin, frames, _chunk_views(frames, wv.manifest))
        return await self.publish_prepared(self.prepare_encoded(full))

    async def publish_prepared(self, pub: Published) -> int:
        """Make a prepared version the latest (on the serving loop)."""
        if self.latest is not None and pub.version <= self.latest.version:
            raise FailedPrecondition(f"version {pub.version} is not newer than the latest {self.latest.version}")
        async with self._changed:
            self.latest = pub
            self._changed.notify_all()
        if pub.delta is not None:
            self.m.delta_fraction.set(pub.delta.wire_bytes / max(1, pub.full.wire_bytes))
        return pub.version

    # ------------------------------------------------------------ RPCs
    async def Negotiate(self, request: weights_pb2.NegotiateRequest, context) -> weights_pb2.NegotiateReply:
        reply = weights_pb2.NegotiateReply(offered=[transport_proto(t) for t in self.transports])  # type: ignore[misc]  # ints are valid enum values
        if self.hub is not None:
            reply.collective.CopyFrom(self.hub.info())
        return reply

    async def Subscribe(self, request: weights_pb2.SubscribeRequest, context):
        kind = transport_name(request.transport)
        if kind not in self.transports:
            raise FailedPrecondition(f"weight transport {kind!r} is not offered by this learner (learner.weight_transports = "
                                     f"{', '.join(self.transports)}); set actor.weight_transport to one of them")
        who = request.subscriber_id or context.peer()
        self._subscribers += 1
        self.m.subscribers.set(self._subscribers)
        self.m.transport_subscribers.labels(kind).inc()
        self._delta_subscribers += kind == "delta"
        try:
            if kind == "collective":
                async for msg in self._collective(request, who):
                    yield msg
                return
            sent, held = request.after_version, request.have_version if kind == "delta" else -1
            while True:
                pub = await self._newer_than(sent)
                frames = pub.full.frames
                if kind == "delta" and pub.delta is not None and pub.delta.manifest.base_version == held:
                    frames = pub.delta.frames
                    self.m.versions_sent.labels("delta").inc()
                else:
                    self.m.versions_sent.labels("stream").inc()
                for f in frames:
                    yield _Serialized(f)
                self.m.sent_bytes.inc(sum(len(f) for f in frames))
                sent = held = pub.version
                log.debug("sent version %d to %s (%s)", sent, who, kind)
        finally:
            self._subscribers -= 1
            self.m.subscribers.set(self._subscribers)
            self.m.transport_subscribers.labels(kind).dec()
            self._delta_subscribers -= kind == "delta"

    async def _newer_than(self, version: int) -> Published:
        async with self._changed:
            await self._changed.wait_for(lambda: self.latest is not None and self.latest.version > version)
            pub = self.latest
        assert pub is not None  # wait_for waited for one
        return pub

    async def _collective(self, request: weights_pb2.SubscribeRequest, who: str):
        """The latest version in full on the stream (when newer than after_version), then the rounds of the group."""
        assert self.hub is not None  # Subscribe checked the offer
        loop = asyncio.get_running_loop()
        rounds: asyncio.Queue[list[bytes] | None] = asyncio.Queue()
        pub = self.latest
        if pub is not None and pub.version > request.after_version:
            for f in pub.full.frames:
                yield _Serialized(f)
            self.m.sent_bytes.inc(pub.full.wire_bytes)
            self.m.versions_sent.labels("stream").inc()
        member = self.hub.join(who, lambda frames: loop.call_soon_threadsafe(rounds.put_nowait, frames))
        log.info("%s joined the weight collective (%d members)", who, self.hub.members)
        try:
            while True:
                frames = await rounds.get()
                if frames is None:
                    raise Unavailable("evicted from the weight collective after a failed round; subscribe to the stream")
                for f in frames:
                    yield _Serialized(f)
                self.m.versions_sent.labels("collective").inc()
        finally:
            self.hub.leave(member)

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
            if msg.WhichOneof("kind") == "collective" or (msg.HasField("begin") and msg.begin.is_delta):
                raise InvalidArgument(f"Publish message {len(msgs)}: publish full versions only")
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


def _chunk_views(frames: list[bytes], manifest: weights_pb2.WeightManifest) -> list[list[memoryview]]:
    """Per tensor, the payload views of its parts in ``frames`` (so a later delta can read this version)."""
    from atlasrl.weight_codec import RawPart, parse_frame

    chunks: list[list[memoryview]] = [[] for _ in manifest.tensors]
    for f in frames:
        p = parse_frame(f)
        if isinstance(p, RawPart):
            chunks[p.index].append(p.data)
        elif p.WhichOneof("kind") == "part":
            d = p.part.data
            chunks[p.part.index].append(memoryview(f)[len(f) - len(d):])
    return chunks
