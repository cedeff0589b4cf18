"""WeightService client: receive verified policy weights from the learner, by the negotiated transport.

    sub = WeightSubscriber("127.0.0.1:50052", subscriber_id="actor-0", transport="delta")
    await sub.negotiate()                        # start-up: TransportUnsupported if the learner does not offer it
    async for wv in sub.versions():              # latest version first, then each new one
        engine.update_weights(wv.version, wv.to_torch())     # [(hf_name, tensor)], bf16 by default
        # wv.version, wv.manifest, wv.tensors (name -> numpy array), wv.transport

A version is applied only after its ``end`` message arrived and every tensor was verified: index in range,
parts contiguous, byte count, CRC-32 (of the rebuilt bytes for a delta, of the broadcast bytes for the
collective), and - when ``expected`` is given (name -> (shape, wire dtype or numpy dtype)) - that the name
exists in the engine's model with the same shape. A version that fails any check, or arrives out of order
(not newer than the last good one), is refused: counted in ``actor_weight_versions_refused_total{reason}``,
never yielded, and recovered by resubscribing (a full resync for the delta transport; the collective one falls
back to the stream, logged and counted in ``actor_weight_transport_fallbacks_total``). Transports:
atlasrl/weights/transport.py; wire format: atlasrl/weight_codec.py, shared with the learner. Importable
without torch (the collective transport imports it when used).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import grpc

from atlasrl.rpc import ChannelConfig, make_channel
from atlasrl.rpc.retry import Backoff
from atlasrl.v1 import weights_pb2, weights_pb2_grpc
from atlasrl.weight_codec import DeltaBaseError, MiB, TensorBlob, WeightStreamError, WeightVersion, encode_version
from atlasrl.weights.transport import (
    SubscriberMetrics,
    TransportUnsupported,
    WeightTransport,
    _Fallback,
    check_offer,
    make_transport,
)

log = logging.getLogger("atlasrl.clients.weights")
SUBSCRIBE = "/atlasrl.v1.WeightService/Subscribe"


class OutOfOrder(WeightStreamError):
    """A version not newer than the last good one (and not a lineage reset)."""


class WeightSubscriber:
    """Async iterator of verified weight versions; reconnects after failures."""

    def __init__(
        self,
        target: str,
        *,
        subscriber_id: str = "",
        after_version: int = -1,
        expected: dict[str, tuple[Sequence[int], object]] | None = None,
        reconnect: bool = True,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        channel_config: ChannelConfig | None = None,
        transport: str = "stream",
        metrics=None,
    ):
        self.target = target
        self.subscriber_id = subscriber_id
        self.last_version = after_version
        self.expected = expected
        self.reconnect = reconnect
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.channel_config = channel_config or ChannelConfig(max_message_bytes=8 * MiB)
        self.errors = 0
        self.transport_name = transport
        self.m = metrics if isinstance(metrics, SubscriberMetrics) else SubscriberMetrics(metrics)
        self.transport: WeightTransport | None = None
        self.held: WeightVersion | None = None      # the last good version (the delta transport's base)
        self._reply: weights_pb2.NegotiateReply | None = None

    async def negotiate(self, timeout: float = 10.0) -> weights_pb2.NegotiateReply | None:
        """Ask the learner what it offers; raise TransportUnsupported (naming the keys) if not ours.
        None when the learner cannot be reached now (``versions()`` negotiates again once it can)."""
        try:
            async with make_channel(self.target, self.channel_config) as ch:
                reply = await self._negotiate(weights_pb2_grpc.WeightServiceStub(ch), timeout)
        except grpc.aio.AioRpcError as e:
            log.warning("weight transport not negotiated yet: the learner at %s answered %s", self.target, e.code().name)
            return None
        return reply

    async def _negotiate(self, stub, timeout: float | None = 10.0) -> weights_pb2.NegotiateReply:
        try:
            reply = await stub.Negotiate(weights_pb2.NegotiateRequest(subscriber_id=self.subscriber_id), timeout=timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            reply = weights_pb2.NegotiateReply(offered=[weights_pb2.WEIGHT_TRANSPORT_STREAM])  # a learner older than transports
        check_offer(self.transport_name, reply.offered, self.target)
        self._reply = reply
        return reply

    async def _start_transport(self, stub) -> WeightTransport:
        reply = self._reply or await self._negotiate(stub, None)
        t = make_transport(self.transport_name, reply)
        started = await t.start()
        if started is not t:
            self._fell_back(t, started)
        self.m.using(started.name)
        return started

    def _fell_back(self, old: WeightTransport, new: WeightTransport) -> None:
        reason = new.reason if isinstance(new, _Fallback) else ""
        log.warning("weight transport: cannot use %s (%s); falling back to the gRPC stream", old.name, reason)
        self.m.fallbacks.labels(old.name, new.name).inc()
        self.m.using(new.name)

    async def versions(self) -> AsyncIterator[WeightVersion]:
        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s)
        async with make_channel(self.target, self.channel_config) as ch:
            stub = weights_pb2_grpc.WeightServiceStub(ch)
            subscribe = ch.unary_stream(SUBSCRIBE, request_serializer=weights_pb2.SubscribeRequest.SerializeToString,
                                        response_deserializer=None)   # raw frames: parts are parsed without protobuf
            try:
                while True:
                    try:
                        t = self.transport = self.transport or await self._start_transport(stub)
                    except grpc.aio.AioRpcError as e:
                        if not self.reconnect:
                            raise
                        log.info("weight negotiation with %s failed (%s); retrying", self.target, e.code().name)
                        await backoff.sleep()
                        continue
                    asm = t.assembler(self.expected, self.held)
                    reset = await self._lineage_reset(stub)
                    req = t.request(self.subscriber_id, self.last_version, self.held)
                    try:
                        async for raw in subscribe(req):
                            wv = asm.feed(raw)
                            if asm.pending_round is not None:
                                assert asm.manifest is not None  # a round follows its begin
                                asm.fill_collective(await asyncio.to_thread(t.receive, asm.manifest, asm.pending_round))  # type: ignore[attr-defined]  # only the collective transport announces rounds
                            if wv is None:
                                continue
                            if wv.version <= self.last_version and not reset and req.after_version >= 0:
                                raise OutOfOrder(f"version {wv.version} after version {self.last_version}")
                            backoff.reset()
                            self.last_version = wv.version
                            if self.transport_name == "delta":
                                self.held = asm.base = wv     # the next delta of this stream applies to it
                            wv.lineage_reset, reset = reset, False
                            self.m.received.labels(wv.transport).inc()
                            yield wv
                        if not self.reconnect:
                            return
                    except Exception as e:
                        if not isinstance(e, grpc.aio.AioRpcError | WeightStreamError) and not _is_collective_error(e):
                            raise
                        self.errors += 1
                        self._count_refusal(e)
                        nxt = t.recover(e, self.m)
                        if nxt is not t:
                            self._fell_back(t, nxt)
                            self.transport = nxt
                        elif not self.reconnect:
                            raise
                        log.info("weight stream from %s broke (%s); resubscribing after version %d", self.target, e, self.last_version)
                        if nxt is not t or not isinstance(e, grpc.aio.AioRpcError):
                            continue   # a refused version or a fallback: resubscribe at once
                    await backoff.sleep()
            finally:
                if self.transport is not None:
                    self.transport.close()

    def _count_refusal(self, e: Exception) -> None:
        if isinstance(e, OutOfOrder):
            self.m.refused.labels("out_of_order").inc()
        elif isinstance(e, DeltaBaseError):
            self.m.refused.labels("delta_base").inc()
        elif isinstance(e, WeightStreamError):
            self.m.refused.labels("corrupt").inc()
        elif _is_collective_error(e):
            self.m.refused.labels("collective").inc()
        else:
            return
        log.warning("weight version refused (%s: %s); keeping version %d", type(e).__name__, e, self.last_version)

    async def _lineage_reset(self, stub) -> bool:
        """Before (re)subscribing: has the learner's latest version gone below ours? Then start over from it.

        A learner that restarts from its checkpoints never reuses a version number (its ledger keeps the
        lineage), but one that restarts without them begins again at 0: asking for versions after ours
        would wait until it caught up, while it refuses every episode of ours as made by an unknown version.
        """
        if self.last_version < 0:
            return False
        try:
            latest = await stub.GetLatest(weights_pb2.GetLatestRequest(), timeout=5.0)
        except grpc.aio.AioRpcError:
            return False   # nothing published yet, or unreachable: Subscribe will wait or fail as before
        if latest.version >= self.last_version:
            return False
        log.warning("the learner at %s serves version %d, below our %d: it restarted without its lineage; "
                    "taking its weights", self.target, latest.version, self.last_version)
        self.last_version = -1
        self.held = None
        return True

    async def get_latest(self, timeout: float = 5.0) -> weights_pb2.WeightManifest:
        async with make_channel(self.target, self.channel_config) as ch:
            return await weights_pb2_grpc.WeightServiceStub(ch).GetLatest(weights_pb2.GetLatestRequest(), timeout=timeout)


def _is_collective_error(e: Exception) -> bool:
    from atlasrl.weights.collective import CollectiveError

    return isinstance(e, CollectiveError)


async def publish_remote(target: str, version: int, blobs: Sequence[TensorBlob], token: str, chunk_bytes: int = MiB) -> int:
    """Upload a version with WeightService.Publish (needs the learner's publish token)."""
    cfg = ChannelConfig(max_message_bytes=8 * MiB)
    async with make_channel(target, cfg) as ch:
        stub = weights_pb2_grpc.WeightServiceStub(ch)
        msgs = encode_version(version, blobs, chunk_bytes)
        ack = await stub.Publish(iter(msgs), metadata=(("authorization", f"Bearer {token}"),))
        return ack.version


__all__ = ["OutOfOrder", "TransportUnsupported", "WeightSubscriber", "publish_remote"]
