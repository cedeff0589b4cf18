"""EnvClient's own behaviour (the client the actor, the tests and the benches share): lazy frames,
the unanswered request, reconnecting after a server restart, an unreachable server."""
from __future__ import annotations

import asyncio
import socket
import time

import grpc
import numpy as np
import pytest

from atlasrl.clients.env import EnvClient, EnvStreamClosed
from atlasrl.rpc import RemoteError


async def test_undecoded_frames_decode_on_first_read(server):
    async with EnvClient(server.address, decode_images=False) as lazy, EnvClient(server.address) as eager:
        h_lazy, _ = await lazy.open("frozenlake", seed=4)
        h_eager, _ = await eager.open("frozenlake", seed=4)
        a, b = await lazy.reset(h_lazy, seed=4), await eager.reset(h_eager, seed=4)
        assert a._images is None and b._images is not None       # nothing decoded until asked
        assert np.array_equal(a.images[0], b.images[0]) and a.proto.images[0].data
        [r] = await lazy.step([(h_lazy, "Right")])
        assert r.handle == h_lazy and r.observation.step == 1 and r.observation._images is None


async def test_an_unanswered_request_ends_the_stream_and_reconnect_starts_over(start_server):
    server = await start_server()
    gate = asyncio.Event()
    real_step = server.pool.step

    async def held_step(*args, **kwargs):
        await gate.wait()
        return await real_step(*args, **kwargs)

    client = EnvClient(server.address, request_timeout_s=0.5)
    try:
        h, _ = await client.open("frozenlake", seed=0)
        await client.reset(h)
        server.pool.step = held_step
        t0 = time.monotonic()
        stepping = asyncio.ensure_future(client.step_one(h, "Right"))
        await asyncio.sleep(0.1)
        queued = asyncio.ensure_future(client.reset(h))                  # answered after the held step: fails with it
        with pytest.raises(EnvStreamClosed) as e:
            await stepping
        assert e.value.status_code == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - t0 < 5
        with pytest.raises(EnvStreamClosed):
            await queued
        assert client.down
        with pytest.raises(EnvStreamClosed):                             # stays closed until reconnect()
            await client.reset(h)
        server.pool.step = real_step
        gate.set()
        await client.reconnect()
        assert not client.down
        with pytest.raises(RemoteError) as e:                            # handles belonged to the old stream
            await client.reset(h)
        assert e.value.status_code == grpc.StatusCode.NOT_FOUND and not isinstance(e.value, EnvStreamClosed)
        h2, _ = await client.open("frozenlake", seed=0)
        assert (await client.reset(h2)).step == 0
    finally:
        gate.set()
        await client.aclose()


async def test_reconnect_after_the_server_restarts_on_the_same_port(start_server):
    first = await start_server()
    port = int(first.address.rsplit(":", 1)[1])
    client = EnvClient(first.address, connect_timeout_s=0.5)
    try:
        await client.reconnect()
        h, _ = await client.open("frozenlake", seed=1)
        await client.reset(h)
        await first.stop(0)
        with pytest.raises(EnvStreamClosed):
            await client.step_one(h, "Right")
        assert client.down
        with pytest.raises(EnvStreamClosed) as e:                         # nobody listening: a quick, clear refusal
            await client.reconnect()
        assert e.value.status_code == grpc.StatusCode.UNAVAILABLE and "unreachable" in e.value.message
        assert client.down
        await start_server(port=port)
        await client.reconnect()
        h, _ = await client.open("frozenlake", seed=1)
        await client.reset(h)
        assert (await client.step_one(h, "Right")).step == 1
    finally:
        await client.aclose()


async def test_reconnect_to_a_port_nobody_listens_on_is_refused_within_the_connect_timeout():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = EnvClient(f"127.0.0.1:{port}", connect_timeout_s=0.3)
    t0 = time.monotonic()
    with pytest.raises(EnvStreamClosed) as e:
        await client.reconnect()
    assert e.value.status_code == grpc.StatusCode.UNAVAILABLE and time.monotonic() - t0 < 3 and client.down
    await client.aclose()
