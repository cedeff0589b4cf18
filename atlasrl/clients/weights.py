"""WeightService client: receive verified policy weights from the learner.

    sub = WeightSubscriber("127.0.0.1:50052", subscriber_id="actor-0")
    async for wv in sub.versions():              # latest version first, then each new one
        engine.update_weights(wv.to_torch())     # [(hf_name, tensor)], bf16 by default
        # wv.version, wv.manifest, wv.tensors (name -> numpy array)

A version is applied only after its ``end`` message arrived and every tensor
was verified: index in range, parts contiguous, byte count, CRC-32, and - when
``expected`` is given (name -> (shape, wire dtype or numpy dtype)) - that the
name exists in the engine's model with the same shape. A version that fails any
check raises ``WeightStreamError``; the subscriber then reconnects and asks for
versions after the last good one. The wire format (`encode_version`,
`VersionAssembler`) is atlasrl/weight_codec.py, shared with the learner.
Importable without torch.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

import grpc

from atlasrl.rpc import ChannelConfig, make_channel
from atlasrl.rpc.retry import Backoff
from atlasrl.v1 import weights_pb2, weights_pb2_grpc
from atlasrl.weight_codec import MiB, TensorBlob, VersionAssembler, WeightStreamError, WeightVersion, encode_version

log = logging.getLogger("atlasrl.clients.weights")


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

    async def versions(self) -> AsyncIterator[WeightVersion]:
        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s)
        async with make_channel(self.target, self.channel_config) as ch:
            stub = weights_pb2_grpc.WeightServiceStub(ch)
            while True:
                asm = VersionAssembler(self.expected)
                reset = await self._lineage_reset(stub)
                req = weights_pb2.SubscribeRequest(subscriber_id=self.subscriber_id, after_version=self.last_version)
                try:
                    async for msg in stub.Subscribe(req):
                        wv = asm.feed(msg)
                        if wv is not None:
                            backoff.reset()
                            self.last_version = wv.version
                            wv.lineage_reset, reset = reset, False
                            yield wv
                    if not self.reconnect:
                        return
                except (grpc.aio.AioRpcError, WeightStreamError) as e:
                    self.errors += 1
                    if not self.reconnect:
                        raise
                    log.info("weight stream from %s broke (%s); resubscribing after version %d", self.target, e, self.last_version)
                await backoff.sleep()

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
        return True

    async def get_latest(self, timeout: float = 5.0) -> weights_pb2.WeightManifest:
        async with make_channel(self.target, self.channel_config) as ch:
            return await weights_pb2_grpc.WeightServiceStub(ch).GetLatest(weights_pb2.GetLatestRequest(), timeout=timeout)


async def publish_remote(target: str, version: int, blobs: Sequence[TensorBlob], token: str, chunk_bytes: int = MiB) -> int:
    """Upload a version with WeightService.Publish (needs the learner's publish token)."""
    cfg = ChannelConfig(max_message_bytes=8 * MiB)
    async with make_channel(target, cfg) as ch:
        stub = weights_pb2_grpc.WeightServiceStub(ch)
        msgs = encode_version(version, blobs, chunk_bytes)
        ack = await stub.Publish(iter(msgs), metadata=(("authorization", f"Bearer {token}"),))
        return ack.version


__all__ = ["WeightSubscriber", "publish_remote"]
