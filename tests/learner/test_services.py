"""TrajectoryService and WeightService over real loopback gRPC."""
import asyncio
import urllib.request
import zlib

import grpc
import ml_dtypes
import numpy as np
import pytest

from atlasrl.clients.trajectory import TrajectorySender
from atlasrl.clients.weights import WeightSubscriber, publish_remote
from atlasrl.learner.buffer import EpisodeBuffer
from atlasrl.learner.config import LearnerConfig
from atlasrl.learner.metrics import LearnerMetrics
from atlasrl.learner.trajectory_service import TrajectoryServicer
from atlasrl.learner.weight_service import WeightServicer
from atlasrl.rpc import RpcServer, ServerConfig, make_channel
from atlasrl.v1 import trajectory_pb2, trajectory_pb2_grpc, weights_pb2, weights_pb2_grpc
from atlasrl.weight_codec import TensorBlob, VersionAssembler, WeightStreamError, encode_version

from .helpers import VOCAB, episode

MiB = 1 << 20


class Learner:
    """The two rank-0 services around a buffer, as main.py wires them."""

    def __init__(self, **cfg):
        self.cfg = LearnerConfig(model="x", batch_episodes=2, **cfg)
        self.version = 3
        self.metrics = LearnerMetrics()
        self.buffer = EpisodeBuffer(self.cfg, VOCAB)
        self.weights = WeightServicer(self.metrics, publish_token="s3cret")
        self.server = RpcServer(ServerConfig(port=0, metrics_port=0), self.metrics.metrics)
        self.server.add(TrajectoryServicer(self.buffer, lambda: self.version, self.metrics), trajectory_pb2.DESCRIPTOR.services_by_name["TrajectoryService"])
        self.server.add(self.weights, weights_pb2.DESCRIPTOR.services_by_name["WeightService"])


@pytest.fixture
async def learner():
    lr = Learner(max_staleness=2)
    await lr.server.start()
    yield lr
    await lr.server.stop(0)


def blobs(seed, sizes=((64, 32), (3 * MiB // 2 // 2,), (7,))):
    rng = np.random.default_rng(seed)
    return [TensorBlob.from_numpy(f"t{i}", rng.standard_normal(s).astype(ml_dtypes.bfloat16)) for i, s in enumerate(sizes)]


async def test_push_outcomes_in_one_ack(learner):
    good, dup = episode(version=3), episode(version=2)
    bad_len = episode(version=3)
    del bad_len.turns[0].logprobs[-1]
    future = episode(version=4)
    stale = episode(version=0)
    async with make_channel(learner.server.address) as ch:
        stub = trajectory_pb2_grpc.TrajectoryServiceStub(ch)
        await stub.Push(iter([dup]))
        ack = await stub.Push(iter([good, dup, bad_len, future, stale]))
        info = await stub.GetInfo(trajectory_pb2.TrajectoryInfoRequest())
    assert (ack.accepted, ack.duplicates, ack.learner_version) == (1, 1, 3)
    assert list(ack.acked_ids) == [good.episode_id, dup.episode_id]
    rej = {r.episode_id: r.status for r in ack.rejected}
    assert rej[bad_len.episode_id].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "1 logprobs for 2 response tokens" in rej[bad_len.episode_id].message
    assert rej[future.episode_id].code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert "newer than the learner's version 3" in rej[future.episode_id].message
    assert "3 versions stale" in rej[stale.episode_id].message
    assert (info.version, info.buffered, info.max_staleness) == (3, 2, 2)
    text = urllib.request.urlopen(f"http://127.0.0.1:{learner.server.metrics_port}/metrics").read().decode()
    assert 'atlasrl_learner_episodes_received_total{outcome="duplicate"} 1.0' in text
    assert 'atlasrl_learner_episodes_received_total{outcome="unacceptable"} 2.0' in text


async def test_garbage_message_rejected_stream_continues(learner):
    ep = episode(version=3)
    async with make_channel(learner.server.address) as ch:
        push = ch.stream_unary("/atlasrl.v1.TrajectoryService/Push", request_serializer=None, response_deserializer=trajectory_pb2.PushAck.FromString)
        ack = await push(iter([b"\x0a\xff\xff junk", ep.SerializeToString()]))
    assert list(ack.acked_ids) == [ep.episode_id]
    assert ack.rejected[0].episode_id == "" and "atlasrl.v1.Episode" in ack.rejected[0].status.message


async def test_close_groups_without_an_actor_id_is_refused_and_the_service_goes_on(learner):
    ep = episode(version=3, group_size=2, actor="a0")
    async with make_channel(learner.server.address) as ch:
        stub = trajectory_pb2_grpc.TrajectoryServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CloseGroups(trajectory_pb2.CloseGroupsRequest())
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "actor_id is empty" in err.value.details()
        await stub.Push(iter([ep]))
        reply = await stub.CloseGroups(trajectory_pb2.CloseGroupsRequest(actor_id="a0"))
    assert (reply.closed, reply.dropped) == (0, 1) and learner.buffer.buffered == 0


async def test_real_sender_delivers_and_resends_after_full_buffer():
    lr = Learner(algo="ppo", buffer_capacity=2)
    await lr.server.start()
    try:
        async with TrajectorySender(lr.server.address, backoff_initial_s=0.02) as sender:
            eps = [episode(version=3) for _ in range(3)]
            for ep in eps:
                await sender.put(ep)
            await asyncio.sleep(0.3)
            assert lr.buffer.buffered == 2 and sender.buffered == 1        # third deferred, kept by the actor
            lr.buffer.take(2, 3, timeout=0)
            await sender.flush(timeout=5)
        assert lr.buffer.buffered == 1 and sender.stats.accepted == 3
    finally:
        await lr.server.stop(0)


async def test_subscriber_receives_bit_exact_and_late_subscriber_gets_latest(learner):
    v1, v2 = blobs(1), blobs(2)
    await learner.weights.publish(encode_version(1, v1, MiB))
    early = WeightSubscriber(learner.server.address, subscriber_id="early")
    got = []

    async def consume():
        async for wv in early.versions():
            got.append(wv)
            if wv.version == 2:
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    await learner.weights.publish(encode_version(2, v2, MiB))
    await asyncio.wait_for(task, 10)
    assert [wv.version for wv in got] == [1, 2]
    for b in v2:
        arr = got[1].tensors[b.name]
        assert arr.dtype == ml_dtypes.bfloat16 and arr.shape == b.shape
        assert arr.tobytes() == bytes(b.data)
    late = WeightSubscriber(learner.server.address, reconnect=False)
    async for wv in late.versions():
        assert wv.version == 2 and wv.tensors["t1"].tobytes() == bytes(v2[1].data)
        break
    manifest = await late.get_latest()
    assert manifest.version == 2 and manifest.tensors[1].crc32 == zlib.crc32(v2[1].data)
    assert got[1].to_torch()[0][1].dtype.__str__() == "torch.bfloat16"


async def test_remote_publish_needs_token_and_newer_version(learner):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await publish_remote(learner.server.address, 5, blobs(3), token="wrong")
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await publish_remote(learner.server.address, 5, blobs(3), token="s3cret") == 5
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await publish_remote(learner.server.address, 4, blobs(3), token="s3cret")
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "not newer" in e.value.details()
    corrupt = encode_version(6, blobs(4), MiB)
    corrupt[2].part.data = b"\x00" * len(corrupt[2].part.data)
    async with make_channel(learner.server.address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await weights_pb2_grpc.WeightServiceStub(ch).Publish(iter(corrupt), metadata=(("authorization", "Bearer s3cret"),))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "CRC-32" in e.value.details()


async def test_get_latest_before_any_version(learner):
    async with make_channel(learner.server.address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await weights_pb2_grpc.WeightServiceStub(ch).GetLatest(weights_pb2.GetLatestRequest())
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_chunks_are_1_to_4_mib_and_assembler_verifies():
    b = blobs(5)
    msgs = encode_version(7, b, 2 * MiB)
    assert max(len(m.part.data) for m in msgs if m.HasField("part")) <= 2 * MiB
    asm = VersionAssembler(expected={"t0": ((64, 32), None), "t1": ((3 * MiB // 4,), None), "t2": ((7,), None)})
    out = [asm.feed(m) for m in msgs]
    assert out[-1].version == 7 and all(o is None for o in out[:-1])
    with pytest.raises(WeightStreamError, match="shape"):
        VersionAssembler(expected={"t0": ((1,), None), "t1": ((3 * MiB // 4,), None), "t2": ((7,), None)}).feed(msgs[0])
    msgs = encode_version(7, b, MiB)       # t1 (1.5 MiB) comes in two parts
    reordered = [msgs[0], msgs[1], msgs[3]]
    asm = VersionAssembler()
    with pytest.raises(WeightStreamError, match="offset"):
        for m in reordered:
            asm.feed(m)
    with pytest.raises(ValueError, match="1-4 MiB"):
        encode_version(1, b, 8 * MiB)
