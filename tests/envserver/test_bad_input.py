"""Every kind of bad input gets a clear status, and the stream and the server keep serving."""
from __future__ import annotations

import grpc
import numpy as np
import pytest

from atlasrl import codec
from atlasrl.clients.env import EnvClient, EnvObservation, EnvStreamClosed
from atlasrl.rpc import RemoteError, make_channel
from atlasrl.v1 import env_pb2, env_pb2_grpc

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]


async def _ready(client: EnvClient, seed: int = 0) -> int:
    handle, _ = await client.open("frozenlake", {"size": "4"}, seed=seed)
    await client.reset(handle)
    return handle


async def test_unknown_env_id_lists_registered_ids_and_stream_goes_on(server):
    async with EnvClient(server.address) as c:
        with pytest.raises(RemoteError) as e:
            await c.open("frozenpond")
        assert e.value.code == NOT_FOUND
        assert "frozenpond" in e.value.message and "frozenlake" in e.value.message and "sokoban" in e.value.message
        assert (await c.step_one(await _ready(c), "Right")).step == 1


async def test_env_outside_the_served_list(start_server):
    server = await start_server(envs=["frozenlake"])
    async with EnvClient(server.address) as c:
        with pytest.raises(RemoteError) as e:
            await c.open("sokoban")
        assert e.value.code == NOT_FOUND and "not served here" in e.value.message and "frozenlake" in e.value.message
        assert [s.env_id for s in await c.list_envs()] == ["frozenlake"]


async def test_bad_config_names_the_key(server):
    async with EnvClient(server.address) as c:
        with pytest.raises(RemoteError) as e:
            await c.open("frozenlake", {"size": "banana"})
        assert e.value.code == INVALID_ARGUMENT and "size" in e.value.message and "banana" in e.value.message
        with pytest.raises(RemoteError) as e:
            await c.open("frozenlake", {"colour": "blue"})
        assert e.value.code == INVALID_ARGUMENT and "colour" in e.value.message
        assert server.manager.live == 0, "a failed open must not hold a slot"


async def test_request_without_payload_and_empty_or_duplicate_steps(server):
    async with EnvClient(server.address) as c:
        with pytest.raises(RemoteError) as e:
            await c.request(env_pb2.EnvRequest())
        assert e.value.code == INVALID_ARGUMENT and "no payload" in e.value.message
        handle = await _ready(c)
        with pytest.raises(RemoteError) as e:
            await c.step({})
        assert e.value.code == INVALID_ARGUMENT and "no actions" in e.value.message
        first, dup = await c.step([(handle, "Right"), (handle, "Down")])
        assert first.unwrap().agent == (0, 1)
        assert dup.error.code == INVALID_ARGUMENT and "more than once" in dup.error.message


async def test_garbage_bytes_get_invalid_argument_per_message(server):
    async with make_channel(server.address) as ch:
        call = ch.stream_stream("/atlasrl.v1.EnvService/Session", request_serializer=None,
                                response_deserializer=env_pb2.EnvResponse.FromString)()
        await call.write(b"\x0a\xff\xff\xff garbage")
        await call.write(env_pb2.EnvRequest(request_id=7, open=env_pb2.OpenRequest(env_id="frozenlake", seed=1)).SerializeToString())
        await call.write(b"\xff")
        await call.write(env_pb2.EnvRequest(request_id=8, close=env_pb2.CloseRequest(handles=[])).SerializeToString())
        bad1, opened, bad2, closed = [await call.read() for _ in range(4)]
        await call.done_writing()
    for bad in (bad1, bad2):
        assert bad.request_id == 0 and bad.status.code == INVALID_ARGUMENT and "atlasrl.v1.EnvRequest" in bad.status.message
    assert opened.request_id == 7 and opened.status.code == 0 and opened.open.handle > 0
    assert closed.request_id == 8 and closed.status.code == 0


async def test_oversized_message_ends_only_that_stream(start_server):
    server = await start_server(max_message_bytes=64 * 1024)
    async with EnvClient(server.address) as ok, EnvClient(server.address) as big:
        h_ok = await _ready(ok)
        h_big = await _ready(big)
        with pytest.raises(EnvStreamClosed) as e:
            await big.step({h_big: "Right " * 20_000})
        assert e.value.status_code == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(EnvStreamClosed):
            await big.step({h_big: "Right"})  # the broken stream stays broken, cleanly
        assert (await ok.step_one(h_ok, "Right")).step == 1
    async with EnvClient(server.address) as again:
        assert (await again.step_one(await _ready(again), "Down")).step == 1


async def test_a_tensor_whose_byte_count_lies_is_rejected_by_the_decoder(server):
    """No request carries a Tensor today, so the guard is exercised where tensors arrive: the client's decode."""
    async with EnvClient(server.address, decode_images=False) as c:
        handle, _ = await c.open("frozenlake", seed=0)
        proto = (await c.reset(handle)).proto
    good = EnvObservation.from_proto(proto)
    assert good.images[0].shape == (128, 128, 3)
    raw = env_pb2.Observation()
    raw.CopyFrom(proto)
    raw.images[0].CopyFrom(codec.encode(np.zeros((8, 8, 3), np.uint8), compress=False))
    raw.images[0].shape[:] = [128, 128, 3]  # claims 49152 bytes, carries 192
    with pytest.raises(codec.SizeError, match="carries 192 bytes"):
        EnvObservation.from_proto(raw)
    zipped = env_pb2.Observation()
    zipped.CopyFrom(proto)
    zipped.images[0].shape[:] = [512, 512, 3]  # zstd payload inflates to far less than claimed
    with pytest.raises(codec.CodecError):
        EnvObservation.from_proto(zipped)


async def test_handles_belong_to_their_stream(server):
    async with EnvClient(server.address) as a, EnvClient(server.address) as b:
        h = await _ready(a)
        await _ready(b)
        [r] = await b.step({h: "Right"})
        assert r.error.code == NOT_FOUND
        with pytest.raises(RemoteError):
            await b.close([h])
        assert (await a.step_one(h, "Right")).step == 1
    async with make_channel(server.address) as ch:
        assert (await env_pb2_grpc.EnvServiceStub(ch).ListEnvs(env_pb2.ListEnvsRequest())).envs
    assert server.manager.live == 0, "ending a stream closes its envs"
