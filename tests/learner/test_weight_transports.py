"""Weight transports end to end over real gRPC: stream (hand-built frames), delta (element-wise difference + zstd-1, resync after a
corrupt, skipped or out-of-order version), collective (gloo group between the learner's LearnerHost and
subscribers in this process), the collective's fallback to the stream, and a transport the learner does not offer."""
import asyncio
import logging
import socket
import zlib

import grpc
import ml_dtypes
import numpy as np
import pytest
import torch

from atlasrl.clients.weights import WeightSubscriber
from atlasrl.learner.config import LearnerConfig
from atlasrl.learner.metrics import LearnerMetrics
from atlasrl.learner.server import LearnerHost
from atlasrl.learner.weight_service import Published, WeightServicer
from atlasrl.metrics import Metrics
from atlasrl.rpc import RpcServer, ServerConfig, make_channel
from atlasrl.v1 import weights_pb2, weights_pb2_grpc
from atlasrl.weight_codec import (
    DeltaBaseError,
    EncodedVersion,
    RawPart,
    TensorBlob,
    VersionAssembler,
    WeightStreamError,
    encode_delta,
    encode_frames,
    parse_frame,
)
from atlasrl.weights.collective import plan_buckets
from atlasrl.weights.transport import TransportUnsupported

MiB = 1 << 20
SHAPES = {"emb": (512, 64), "w1": (MiB // 2 + 3,), "b": (7,), "empty": (0,)}


def state(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(s) * 0.02).astype(ml_dtypes.bfloat16) for k, s in SHAPES.items()}


def step(sd: dict[str, np.ndarray], seed: int, lr: float = 1e-5) -> dict[str, np.ndarray]:
    """An optimizer-like update: every fp32 value moves by ~lr, then rounds back to bf16 (most stay put)."""
    rng = np.random.default_rng(seed)
    return {k: (v.astype(np.float32) + lr * np.sign(rng.standard_normal(v.shape))).astype(ml_dtypes.bfloat16)
            for k, v in sd.items()}


def blobs(sd):
    return [TensorBlob.from_numpy(k, v) for k, v in sd.items()]


def same(wv, sd) -> bool:
    return set(wv.tensors) == set(sd) and all(wv.tensors[k].tobytes() == v.tobytes() for k, v in sd.items())


def metric(metrics: Metrics, name: str) -> float:
    for line in metrics.exposition().splitlines():
        if line.startswith(name + " ") or (line.startswith(name) and line[len(name)] == "{" and False):
            return float(line.split()[-1])
    for line in metrics.exposition().splitlines():
        if line.startswith(name):
            return float(line.split()[-1])
    raise KeyError(name)


# ---------------------------------------------------------------- codec
def test_frames_parse_without_protobuf_and_match_protobuf():
    sd = state(0)
    enc = encode_frames(3, blobs(sd), 1 * MiB)
    parts = [parse_frame(f) for f in enc.frames[1:-1]]
    assert all(isinstance(p, RawPart) for p in parts)
    for f, p in zip(enc.frames[1:-1], parts):   # the hand-built frame is the protobuf encoding
        m = weights_pb2.WeightUpdate.FromString(f)
        assert (m.version, m.part.index, m.part.offset, m.part.data) == (p.version, p.index, p.offset, bytes(p.data))
    assert max(len(p.data) for p in parts) == MiB and len(parts) == 1 + 2 + 1 + 1   # w1 (1 MiB + 6 bytes) in two
    asm = VersionAssembler()
    out = [asm.feed(f) for f in enc.frames]
    assert same(out[-1], sd) and out[-1].transport == "stream"
    with pytest.raises(WeightStreamError, match="unparseable"):
        parse_frame(b"\x1a\xff\xff\xff")
    bad = bytearray(enc.frames[2])
    bad[-1] ^= 1
    asm = VersionAssembler()
    with pytest.raises(WeightStreamError, match="CRC-32"):
        for f in [*enc.frames[:2], bytes(bad), *enc.frames[3:]]:
            asm.feed(f)


def test_delta_is_small_exact_and_refused_against_another_base():
    v1, v2 = state(1), None
    v2 = step(v1, 2)
    e1, e2 = encode_frames(1, blobs(v1)), encode_frames(2, blobs(v2))
    d = encode_delta(e2, e1)
    assert d is not None and d.manifest.is_delta and d.manifest.base_version == 1
    changed = sum(int((a.view(np.uint16) != b.view(np.uint16)).sum()) for a, b in zip(v1.values(), v2.values()))
    assert 0 < changed < 0.5 * sum(a.size for a in v1.values())
    assert d.wire_bytes < 0.5 * e2.wire_bytes
    held = VersionAssembler()
    for f in e1.frames:
        base = held.feed(f)
    asm = VersionAssembler(base=base)
    out = [asm.feed(f) for f in d.frames][-1]
    assert same(out, v2) and out.transport == "delta"
    v0 = VersionAssembler()
    for f in encode_frames(0, blobs(state(9))).frames:
        other = v0.feed(f)
    with pytest.raises(DeltaBaseError, match="against version 1, but version 0 is held"):
        VersionAssembler(base=other).feed(d.frames[0])
    other.version = 1          # right number, wrong bytes: the rebuilt CRC-32 catches it
    asm = VersionAssembler(base=other)
    with pytest.raises(WeightStreamError, match="CRC-32"):
        for f in d.frames:
            asm.feed(f)
    assert encode_delta(encode_frames(2, blobs({"x": v2["b"]})), e1) is None    # not aligned: send full


def test_buckets_pack_small_tensors_and_keep_large_alone():
    assert plan_buckets([10, 10, 100, 5, 0, 5], 32) == [(0, 2, 0, 20), (2, 3, 20, 120), (3, 6, 120, 130)]
    assert plan_buckets([], 32) == []


# ---------------------------------------------------------------- stream and delta over gRPC
class Learner:
    def __init__(self, transports=("stream", "delta"), servicer_cls=WeightServicer):
        self.metrics = LearnerMetrics()
        self.weights = servicer_cls(self.metrics, transports=transports, chunk_bytes=MiB)
        self.server = RpcServer(ServerConfig(port=0), self.metrics.metrics)
        self.server.add(self.weights, weights_pb2.DESCRIPTOR.services_by_name["WeightService"])

    async def publish(self, version, sd):
        return await self.weights.publish_prepared(self.weights.prepare(version, blobs(sd)))


@pytest.fixture
async def learner():
    lr = Learner()
    await lr.server.start()
    yield lr
    await lr.server.stop(0)


async def take(it, n, timeout=20):
    out = []
    async def go():
        async for wv in it:
            out.append(wv)
            if len(out) == n:
                return
    await asyncio.wait_for(go(), timeout)
    return out


async def wait_subscribed(lr, total=1, delta=1):
    for _ in range(200):
        if lr.weights._subscribers >= total and lr.weights._delta_subscribers >= delta:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError


async def test_stream_and_delta_subscribers_get_bit_exact_versions(learner):
    sds = [state(1)]
    for i in range(2):
        sds.append(step(sds[-1], 10 + i))
    await learner.publish(1, sds[0])
    am, dm = Metrics("actor"), Metrics("actor")
    stream = WeightSubscriber(learner.server.address, subscriber_id="s", transport="stream", metrics=am).versions()
    delta = WeightSubscriber(learner.server.address, subscriber_id="d", transport="delta", metrics=dm).versions()
    got_s, got_d = [await take(stream, 1)], [await take(delta, 1)]
    await wait_subscribed(learner, total=2)
    for v in (2, 3):
        await learner.publish(v, sds[v - 1])
        got_s.append(await take(stream, 1))
        got_d.append(await take(delta, 1))
    for v in (1, 2, 3):
        assert same(got_s[v - 1][0], sds[v - 1]) and same(got_d[v - 1][0], sds[v - 1])
    assert [g[0].transport for g in got_s] == ["stream"] * 3
    assert [g[0].transport for g in got_d] == ["stream", "delta", "delta"]
    assert got_d[2][0].wire_bytes < 0.5 * got_s[2][0].wire_bytes
    assert metric(dm, 'atlasrl_actor_weight_versions_received_total{transport="delta"}') == 2
    assert metric(learner.metrics.metrics, 'atlasrl_learner_weight_versions_sent_total{transport="delta"}') == 2
    assert 0 < metric(learner.metrics.metrics, "atlasrl_learner_weight_delta_fraction") < 0.5
    await stream.aclose()
    await delta.aclose()


async def test_delta_corrupt_version_is_refused_counted_and_resynced_in_full(learner):
    v1 = state(1)
    v2, v3 = step(v1, 2), None
    v3 = step(v2, 3)
    await learner.publish(1, v1)
    m = Metrics("actor")
    sub = WeightSubscriber(learner.server.address, transport="delta", metrics=m, backoff_initial_s=0.01)
    it = sub.versions()
    assert same((await take(it, 1))[0], v1)
    await wait_subscribed(learner)
    pub = learner.weights.prepare(2, blobs(v2))
    frames = list(pub.delta.frames)
    bad = bytearray(frames[2])
    bad[-3] ^= 0x40                                  # one flipped bit inside a zstd frame
    corrupt = Published(pub.version, pub.manifest, pub.full, EncodedVersion(pub.delta.manifest, [*frames[:2], bytes(bad), *frames[3:]]))
    await learner.weights.publish_prepared(corrupt)
    wv = (await take(it, 1))[0]                      # the corrupt delta never comes out: the full v2 does
    assert wv.version == 2 and same(wv, v2) and wv.transport == "stream"
    assert metric(m, 'atlasrl_actor_weight_versions_refused_total{reason="corrupt"}') == 1
    assert metric(m, "atlasrl_actor_weight_resyncs_total") == 1
    await learner.publish(3, v3)                     # back on deltas after the resync
    wv = (await take(it, 1))[0]
    assert same(wv, v3) and wv.transport == "delta"
    await it.aclose()


async def test_delta_after_a_skipped_version_comes_in_full(learner):
    v1 = state(1)
    v2 = step(v1, 2)
    v3 = step(v2, 3)
    await learner.publish(1, v1)
    learner.weights._delta_subscribers += 1          # deltas are made only with a delta subscriber around
    await learner.publish(2, v2)
    await learner.publish(3, v3)
    assert learner.weights.latest.delta.manifest.base_version == 2
    async with make_channel(learner.server.address) as ch:
        call = weights_pb2_grpc.WeightServiceStub(ch).Subscribe(weights_pb2.SubscribeRequest(
            after_version=1, have_version=1, transport=weights_pb2.WEIGHT_TRANSPORT_DELTA))
        first = await call.read()
        call.cancel()
    assert first.begin.version == 3 and not first.begin.is_delta      # held 1, missed 2: full v3


class OutOfOrderServicer(WeightServicer):
    """Sends version 2 then version 1 on the first subscription, then behaves."""

    script: list[bytes] = []

    async def Subscribe(self, request, context):
        if OutOfOrderServicer.script:
            script, OutOfOrderServicer.script = OutOfOrderServicer.script, []
            for f in script:
                yield _raw(f)
            await asyncio.sleep(30)
        async for m in super().Subscribe(request, context):
            yield m


class _raw:
    def __init__(self, data):
        self.data = data

    def SerializeToString(self):
        return self.data


async def test_out_of_order_version_is_refused_and_recovered():
    lr = Learner(servicer_cls=OutOfOrderServicer)
    await lr.server.start()
    try:
        v1, v2, v3 = state(1), state(2), state(3)
        OutOfOrderServicer.script = encode_frames(2, blobs(v2)).frames + encode_frames(1, blobs(v1)).frames
        await lr.publish(3, v3)
        m = Metrics("actor")
        it = WeightSubscriber(lr.server.address, after_version=0, metrics=m, backoff_initial_s=0.01).versions()
        got = await take(it, 2)
        assert [g.version for g in got] == [2, 3] and same(got[1], v3)
        assert metric(m, 'atlasrl_actor_weight_versions_refused_total{reason="out_of_order"}') == 1
        await it.aclose()
    finally:
        await lr.server.stop(0)


async def test_transport_not_offered_is_a_startup_error_naming_the_key():
    lr = Learner(transports=("stream",))
    await lr.server.start()
    try:
        with pytest.raises(TransportUnsupported, match=r"actor.weight_transport=delta.*offers only stream.*learner.weight_transports"):
            await WeightSubscriber(lr.server.address, transport="delta").negotiate()
        async with make_channel(lr.server.address) as ch:       # and the server refuses it too
            call = weights_pb2_grpc.WeightServiceStub(ch).Subscribe(weights_pb2.SubscribeRequest(transport=weights_pb2.WEIGHT_TRANSPORT_COLLECTIVE))
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await call.read()
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "learner.weight_transports" in e.value.details()
        with pytest.raises(ValueError, match="weight_transports"):
            LearnerConfig(model="x", weight_transports=["stream", "stream"])
    finally:
        await lr.server.stop(0)


# ---------------------------------------------------------------- collective (gloo) through LearnerHost
@pytest.fixture
def host():
    cfg = LearnerConfig(model="x", weight_transports=["stream", "collective"], weight_collective_backend="gloo",
                        weight_collective_timeout_s=5, weight_collective_bucket_bytes=MiB)
    h = LearnerHost(cfg, vocab_size=100, version=lambda: 0).start()
    yield h
    h.stop(0)


def torch_state(sd):
    return [torch.from_numpy(v.view(np.uint16).copy()).view(torch.bfloat16) for v in sd.values()]


async def publish_blocking(host, version, sd):
    """LearnerHost.publish_version from a thread (it blocks in the broadcast, like the training thread)."""
    from atlasrl.learner.main import tensor_blob
    from atlasrl.v1 import tensor_pb2

    tensors = torch_state(sd)
    bl = [tensor_blob(k, t, tensor_pb2.DTYPE_BFLOAT16) for k, t in zip(sd, tensors)]
    await asyncio.to_thread(host.publish_version, version, bl, tensors)


async def wait_members(host, n):
    for _ in range(300):
        if host.hub.members == n:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{host.hub.members} members, expected {n}")


async def test_collective_broadcast_over_gloo_to_two_subscribers(host):
    v1 = state(1)
    v2 = step(v1, 2)
    v3 = step(v2, 3)
    await publish_blocking(host, 1, v1)                 # before anyone joined: stream only
    addr = f"127.0.0.1:{host.port}"
    ms = [Metrics("actor"), Metrics("actor")]
    subs = [WeightSubscriber(addr, subscriber_id=f"a{i}", transport="collective", metrics=ms[i]) for i in range(2)]
    its = [s.versions() for s in subs]
    first = await asyncio.gather(*(take(it, 1) for it in its))
    assert all(same(f[0], v1) and f[0].transport == "stream" for f in first)   # the bootstrap copy
    await wait_members(host, 2)
    for v, sd in ((2, v2), (3, v3)):
        pub = asyncio.create_task(publish_blocking(host, v, sd))
        got = await asyncio.gather(*(take(it, 1) for it in its))
        await pub
        assert all(g[0].version == v and same(g[0], sd) and g[0].transport == "collective" for g in got)
    assert host.hub.generation == 1 and host.hub.last.members == 2 and host.hub.last.bytes == sum(a.nbytes for a in v3.values())
    assert metric(ms[0], 'atlasrl_actor_weight_transport{transport="collective"}') == 1
    assert metric(host.metrics.metrics, 'atlasrl_learner_weight_versions_sent_total{transport="collective"}') == 4
    await its[1].aclose()                               # one leaves: the next round forms a new generation
    await wait_members(host, 1)
    pub = asyncio.create_task(publish_blocking(host, 4, v1))
    got = await take(its[0], 1)
    await pub
    assert same(got[0], v1) and got[0].transport == "collective" and host.hub.generation == 2
    await its[0].aclose()


async def test_collective_unreachable_falls_back_to_stream_with_log_and_metric(host, caplog):
    v1 = state(1)
    await publish_blocking(host, 1, v1)
    with socket.socket() as s:                          # a port where no store listens
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    host.hub.port = dead
    host.hub.timeout_s = 1.0
    m = Metrics("actor")
    with caplog.at_level(logging.WARNING, logger="atlasrl.clients.weights"):
        it = WeightSubscriber(f"127.0.0.1:{host.port}", transport="collective", metrics=m).versions()
        got = await take(it, 1)
    assert same(got[0], v1) and got[0].transport == "stream"
    assert "cannot use collective" in caplog.text and "falling back to the gRPC stream" in caplog.text
    assert metric(m, 'atlasrl_actor_weight_transport_fallbacks_total{from_transport="collective",to_transport="stream"}') == 1
    assert metric(m, 'atlasrl_actor_weight_transport{transport="stream"}') == 1
    await it.aclose()


async def test_failed_round_evicts_members_and_training_goes_on(host):
    """A member that announces itself but never joins the group: the round times out, the learner evicts it
    (its stream ends UNAVAILABLE), counts the failure and returns; a real subscriber then falls back."""
    host.hub.timeout_s = 1.0
    v1 = state(1)
    await publish_blocking(host, 1, v1)
    m = Metrics("actor")
    sub = WeightSubscriber(f"127.0.0.1:{host.port}", transport="collective", metrics=m, backoff_initial_s=0.01)
    it = sub.versions()
    await take(it, 1)
    await wait_members(host, 1)
    from atlasrl.weights.collective import CollectiveError

    def refuse(manifest, rnd):
        raise CollectiveError("cannot join this round")
    sub.transport.receive = refuse
    v2 = step(v1, 2)
    pub = asyncio.create_task(publish_blocking(host, 2, v2))
    got = await take(it, 1)                              # after the fallback: v2 over the stream
    await asyncio.wait_for(pub, 10)                      # the learner's round gave up within its timeout
    assert same(got[0], v2) and got[0].transport == "stream"
    assert host.hub.failures == 1 and host.hub.members == 0
    assert metric(host.metrics.metrics, "atlasrl_learner_weight_collective_failures_total") == 1
    assert metric(m, 'atlasrl_actor_weight_versions_refused_total{reason="collective"}') == 1
    assert metric(m, 'atlasrl_actor_weight_transport_fallbacks_total{from_transport="collective",to_transport="stream"}') == 1
    await it.aclose()


def test_manifest_crc_is_of_full_bytes():
    sd = state(4)
    enc = encode_frames(1, blobs(sd))
    assert [t.crc32 for t in enc.manifest.tensors] == [zlib.crc32(v.tobytes()) for v in sd.values()]
