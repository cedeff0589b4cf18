"""The ``WeightTransport`` interface and its three implementations (the subscriber's side of each).

    t = make_transport("delta")                   # or negotiate(...) against a learner's Negotiate reply
    req = t.request(subscriber_id, after_version, held)      # the SubscribeRequest to send
    asm = t.assembler(expected, held)             # verifies what arrives (CRC-32, sizes, base version)
    t = t.recover(error)                          # after a refused version: how to resubscribe

A transport decides three things for a subscriber: what to ask the learner for, how to check and rebuild what
arrives, and what to do when a version is refused. The learner's halves: atlasrl/learner/weight_service.py
(stream, delta) and atlasrl/weights/collective.py (CollectiveHub). Every version, whatever its transport,
carries a manifest with each tensor's CRC-32 of its full bytes and is applied only after all of them match.

Recovery: a refused version (corrupt, out of order, a delta against a version not held) never reaches the
engine, which keeps acting with its last good version. ``stream`` resubscribes after the last good version;
``delta`` does the same but asks for a full version first (a resync); ``collective`` falls back to ``stream``
(also when it cannot join the group at all), with a log line and the ``fallbacks`` metric.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from atlasrl.v1 import weights_pb2
from atlasrl.weight_codec import VersionAssembler, WeightVersion

log = logging.getLogger("atlasrl.weights")

TRANSPORT_NAMES = ("stream", "delta", "collective")
_PROTO: dict[str, int] = {"stream": weights_pb2.WEIGHT_TRANSPORT_STREAM, "delta": weights_pb2.WEIGHT_TRANSPORT_DELTA,
          "collective": weights_pb2.WEIGHT_TRANSPORT_COLLECTIVE}
_NAME: dict[int, str] = {v: k for k, v in _PROTO.items()} | {int(weights_pb2.WEIGHT_TRANSPORT_UNSPECIFIED): "stream"}


def transport_proto(name: str) -> int:
    return _PROTO[name]


def transport_name(proto: int) -> str:
    return _NAME.get(proto, f"unknown({proto})")


class TransportUnsupported(ValueError):
    """The learner does not offer the configured transport: a start-up error naming the keys."""


class SubscriberMetrics:
    """What a subscriber counts, on the actor's registry (``atlasrl_actor_weight_*``)."""

    def __init__(self, metrics=None):
        from atlasrl.metrics import Metrics

        m = metrics or Metrics("actor")
        self.refused = m.counter("actor_weight_versions_refused_total", "Weight versions refused (never applied), by "
                                 "reason: corrupt (checksum, sizes, parse), out_of_order, delta_base (a delta against a "
                                 "version not held), collective (broadcast failed)", ["reason"])
        self.resyncs = m.counter("actor_weight_resyncs_total", "Resubscriptions for a full version after a refused one")
        self.fallbacks = m.counter("actor_weight_transport_fallbacks_total", "Weight transport fallbacks (collective -> "
                                   "stream: the group could not be joined or a round failed)", ["from_transport", "to_transport"])
        self.transport = m.gauge("actor_weight_transport", "1 for the weight transport in use", ["transport"])
        self.received = m.counter("actor_weight_versions_received_total", "Verified weight versions, by how their bytes "
                                  "came (stream, delta, collective)", ["transport"])
        for r in ("corrupt", "out_of_order", "delta_base", "collective"):
            self.refused.labels(r)
        self.fallbacks.labels("collective", "stream")
        for t in TRANSPORT_NAMES:
            self.transport.labels(t)
            self.received.labels(t)

    def using(self, name: str) -> None:
        for t in TRANSPORT_NAMES:
            self.transport.labels(t).set(1 if t == name else 0)


class WeightTransport(ABC):
    """How one subscriber receives the bytes of each version (see the module docstring)."""

    name: ClassVar[str]

    def request(self, subscriber_id: str, after_version: int, held: WeightVersion | None) -> weights_pb2.SubscribeRequest:
        """The SubscribeRequest of a (re)subscription after ``after_version``."""
        return weights_pb2.SubscribeRequest(subscriber_id=subscriber_id, after_version=after_version,
                                            transport=transport_proto(self.name), have_version=-1)  # type: ignore[arg-type]  # an int is a valid enum value

    def assembler(self, expected, held: WeightVersion | None) -> VersionAssembler:
        """The assembler that verifies (and for deltas rebuilds) the versions of one subscription."""
        return VersionAssembler(expected)

    @abstractmethod
    def recover(self, error: Exception, metrics: SubscriberMetrics) -> WeightTransport:
        """After a refused version or a broken subscription: the transport to resubscribe with."""

    async def start(self) -> WeightTransport:
        """Before the first subscription (may fall back: returns the transport to use)."""
        return self

    def close(self) -> None:  # noqa: B027 - optional hook: a no-op unless a transport holds resources
        """Release what the transport holds (a process group)."""


class StreamTransport(WeightTransport):
    """Full tensors in parts on the gRPC stream; a refused version: resubscribe after the last good one."""

    name = "stream"

    def recover(self, error: Exception, metrics: SubscriberMetrics) -> WeightTransport:
        return self


class DeltaTransport(WeightTransport):
    """Element-wise deltas (weight_diff.py) + zstd-1 against the held version on the gRPC stream; full versions when it holds none.

    A refused version (a checksum that fails after rebuilding, a delta against another base): the next
    subscription asks for a full version (``have_version=-1``): a resync."""

    name = "delta"

    def __init__(self) -> None:
        self._resync = False

    def request(self, subscriber_id: str, after_version: int, held: WeightVersion | None) -> weights_pb2.SubscribeRequest:
        req = super().request(subscriber_id, after_version, held)
        if held is not None and not self._resync:
            req.have_version = held.version
        elif self._resync:
            req.after_version = -1          # a full copy of the latest, even if we hold that number
        self._resync = False
        return req

    def assembler(self, expected, held: WeightVersion | None) -> VersionAssembler:
        return VersionAssembler(expected, base=held)

    def recover(self, error: Exception, metrics: SubscriberMetrics) -> WeightTransport:
        from atlasrl.weight_codec import WeightStreamError

        if isinstance(error, WeightStreamError):
            self._resync = True
            metrics.resyncs.inc()
            log.warning("weight delta refused (%s): resyncing with a full version", error)
        return self


class CollectiveTransport(WeightTransport):
    """Versions announced on the gRPC stream, bytes broadcast over the learner's weight group.

    Cannot join (store unreachable, no CUDA for an NCCL group, formation timed out) or a round failed:
    fall back to ``stream`` for good, with a log line and ``actor_weight_transport_fallbacks_total``."""

    name = "collective"

    def __init__(self, info: weights_pb2.CollectiveInfo):
        from atlasrl.weights.collective import CollectiveMember

        self.info = info
        self.member = CollectiveMember(info)

    async def start(self) -> WeightTransport:
        import asyncio

        from atlasrl.weights.collective import CollectiveError

        try:
            await asyncio.to_thread(self.member.connect)
        except CollectiveError as e:
            return self._fall_back(e, None)
        return self

    def receive(self, manifest: weights_pb2.WeightManifest, rnd: weights_pb2.CollectiveRound) -> list:
        """Blocking (run it in a thread): the round's bytes, one buffer per tensor."""
        return self.member.receive(manifest, rnd)

    def recover(self, error: Exception, metrics: SubscriberMetrics) -> WeightTransport:
        """A failed round, a refused version or an eviction: fall back. A plain disconnect: rejoin."""
        import grpc

        if isinstance(error, grpc.aio.AioRpcError) and "weight collective" not in (error.details() or ""):
            return self
        return self._fall_back(error, metrics)

    def _fall_back(self, error: Exception, metrics: SubscriberMetrics | None) -> WeightTransport:
        self.fallback_reason = f"{type(error).__name__}: {error}"
        self.close()
        return _Fallback(self.fallback_reason)

    def close(self) -> None:
        self.member.close()


class _Fallback(StreamTransport):
    """The stream, taken after the collective failed (WeightSubscriber logs and counts the switch)."""

    def __init__(self, reason: str):
        self.reason = reason


def make_transport(name: str, reply: weights_pb2.NegotiateReply | None = None) -> WeightTransport:
    """The transport ``name`` (``collective`` needs the learner's Negotiate reply for its group)."""
    if name == "stream":
        return StreamTransport()
    if name == "delta":
        return DeltaTransport()
    if name == "collective":
        if reply is None or not reply.HasField("collective"):
            raise TransportUnsupported("actor.weight_transport=collective: the learner sent no weight group to join")
        return CollectiveTransport(reply.collective)
    raise ValueError(f"actor.weight_transport: unknown transport {name!r} (known: {', '.join(TRANSPORT_NAMES)})")


def check_offer(name: str, offered: Sequence[int], target: str) -> None:
    """Raise TransportUnsupported (naming both keys) unless the learner offers ``name``."""
    names = [transport_name(p) for p in offered] or ["stream"]
    if name not in names:
        raise TransportUnsupported(f"actor.weight_transport={name}: the learner at {target} offers only "
                                   f"{', '.join(names)} (learner.weight_transports)")
