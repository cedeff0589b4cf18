"""Capacity, idle timeout, shutdown drain, health, reflection and metrics of a live server."""
from __future__ import annotations

import asyncio
import re
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from atlasrl.clients.env import EnvClient, EnvStreamClosed
from atlasrl.rpc import RemoteError, make_channel

RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


async def test_max_envs_gives_resource_exhausted_naming_the_limit(start_server):
    server = await start_server(max_envs=3)
    async with EnvClient(server.address) as a, EnvClient(server.address) as b:
        handles = [(await a.open("frozenlake", seed=i))[0] for i in range(2)]
        await b.open("sokoban", seed=0)
        with pytest.raises(RemoteError) as e:
            await b.open("frozenlake")
        assert e.value.code == RESOURCE_EXHAUSTED and "limit of 3 live envs" in e.value.message
        assert await a.close(handles[:1]) == 1
        await b.open("frozenlake")  # a slot was freed
    assert server.manager.live == 0


async def test_idle_timeout_ends_the_stream_and_frees_its_envs(start_server):
    server = await start_server(idle_timeout_s=0.3)
    async with EnvClient(server.address) as idle, EnvClient(server.address) as busy:
        h_idle, _ = await idle.open("frozenlake", seed=0)
        h_busy, _ = await busy.open("frozenlake", seed=0)
        await busy.reset(h_busy)
        for _ in range(8):  # keeps its stream alive past the timeout (a lenient no-op turn never ends the episode early)
            await asyncio.sleep(0.1)
            await busy.step_one(h_busy, "Wait")
        with pytest.raises(EnvStreamClosed) as e:
            await idle.reset(h_idle)
        assert e.value.status_code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "idle" in e.value.message and "1 envs were closed" in e.value.message
        assert server.manager.live == 1


async def test_shutdown_answers_the_request_in_flight_then_refuses_politely(start_server):
    server = await start_server()
    entered, gate = asyncio.Event(), asyncio.Event()
    real_step = server.pool.step

    async def held_step(*args, **kwargs):  # holds the step in its worker until shutdown has begun
        entered.set()
        await gate.wait()
        return await real_step(*args, **kwargs)

    server.pool.step = held_step
    async with EnvClient(server.address) as c:
        h, _ = await c.open("frozenlake", seed=0)
        await c.reset(h)
        in_flight = asyncio.ensure_future(c.step_one(h, "Wait"))
        await entered.wait()
        stopping = asyncio.ensure_future(server.stop(5.0))
        await asyncio.sleep(0.2)
        assert not in_flight.done()
        gate.set()
        assert (await in_flight).step == 1, "the request in flight at shutdown is answered"
        for _ in range(3):  # later requests: a clean per-request UNAVAILABLE, the stream stays readable
            with pytest.raises(RemoteError) as e:
                await c.step_one(h, "Wait")
            assert e.value.status_code == grpc.StatusCode.UNAVAILABLE and "shutting down" in e.value.message
        assert server.manager.live == 0, "envs are freed at once"
        assert not stopping.done(), "the server waits (up to the grace) for the client to end its stream"
    await asyncio.wait_for(stopping, 5)
    assert server.manager.live == 0


async def test_health_and_reflection(server):
    async with make_channel(server.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for name in ("", "atlasrl.v1.EnvService", "dm_env_rpc.v1.Environment"):
            r = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert r.status == health_pb2.HealthCheckResponse.SERVING, name
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        async for resp in stub.ServerReflectionInfo(iter([req])):
            names = {s.name for s in resp.list_services_response.service}
        assert {"atlasrl.v1.EnvService", "dm_env_rpc.v1.Environment", "grpc.health.v1.Health"} <= names
        req = reflection_pb2.ServerReflectionRequest(file_containing_symbol="atlasrl.v1.EnvService")
        async for resp in stub.ServerReflectionInfo(iter([req])):
            assert resp.file_descriptor_response.file_descriptor_proto


def _scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def _value(text: str, series: str) -> float:
    m = re.search(rf"^{re.escape(series)} ([0-9.e+-]+)$", text, re.M)
    assert m, f"{series} not exposed"
    return float(m.group(1))


async def test_metrics_are_exposed_and_count(start_server):
    server = await start_server(metrics_port=0)
    async with EnvClient(server.address) as c:
        h, _ = await c.open("frozenlake", seed=0)
        await c.reset(h)
        for _ in range(3):
            await c.step_one(h, "Wait")  # lenient invalid text: a penalised no-op step
        [bad] = await c.step({h: "Fly"}, strict=True)
        assert bad.error is not None
        with pytest.raises(RemoteError):
            await c.open("nope")
        text = _scrape(server.metrics_port)
        assert _value(text, 'atlasrl_env_steps_total{env_id="frozenlake"}') == 3
        assert _value(text, 'atlasrl_env_step_latency_seconds_count{env_id="frozenlake"}') == 4  # 3 steps + 1 reset
        assert _value(text, "atlasrl_env_live_envs") == 1
        assert _value(text, 'atlasrl_env_live_sessions{protocol="envservice"}') == 1
        assert _value(text, 'atlasrl_env_errors_total{code="INVALID_ARGUMENT",op="step"}') == 1
        assert _value(text, 'atlasrl_env_errors_total{code="NOT_FOUND",op="open"}') == 1
        raw, wire = _value(text, "atlasrl_env_image_raw_bytes_total"), _value(text, "atlasrl_env_image_wire_bytes_total")
        assert raw == 4 * 128 * 128 * 3 and 0 < wire < raw / 10, "rendered grids should compress well"
        assert _value(text, 'atlasrl_env_request_latency_seconds_count{op="step"}') == 4
    text = _scrape(server.metrics_port)
    assert _value(text, "atlasrl_env_live_envs") == 0


async def test_concurrent_list_envs_agree(server):
    async with EnvClient(server.address) as c:
        lists = await asyncio.gather(*(c.list_envs() for _ in range(4)))
    first = {s.env_id: s for s in lists[0]}
    assert {"frozenlake", "sokoban"} <= set(first) and first["frozenlake"].image_shape
    assert all({s.env_id: s for s in specs} == first for specs in lists)
    assert server.manager.live == 0, "spec probes are not live envs"


async def test_client_gets_a_clean_error_when_the_server_goes_away(start_server):
    server = await start_server()
    async with EnvClient(server.address) as c:
        h, _ = await c.open("frozenlake", seed=0)
        await server.stop(0)  # no grace: streams are cut
        await asyncio.sleep(0.2)
        for _ in range(2):  # and stay cut, with the same clear error
            with pytest.raises(EnvStreamClosed) as e:
                await c.reset(h)
            assert e.value.status_code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), e.value
