"""Compliance tests any MemoryService server must pass (in the style of dm_env_rpc).

A test module adopts them with a tiny subclass that provides the address of a
real, empty server (and optionally its /metrics port):

    class TestMine(MemoryServiceCompliance):
        @pytest.fixture
        async def memory(self):
            server = ...; await server.start()
            yield Endpoint(server.address, server.metrics_port)
            await server.stop()

Every test talks real gRPC to that server; nothing is faked.
"""
from __future__ import annotations

import asyncio
import urllib.request
from dataclasses import dataclass

import grpc
import numpy as np
import pytest

from atlasrl import codec
from atlasrl.clients.memory import MemoryClient, episode_record, trajectory_transitions, transition
from atlasrl.rpc import make_channel
from atlasrl.v1 import memory_pb2, memory_pb2_grpc

FAMILY, LAYOUT = "gridworld", "4x4-a"
HOLE, GOAL = (1, 1), (3, 3)
FAIL_PATH = [(0, 0), (0, 1), (1, 1)]
WIN_PATH = [(0, 0), (1, 0), (2, 0), (3, 0), (3, 1), (3, 2), (3, 3)]


@dataclass
class Endpoint:
    address: str
    metrics_port: int | None = None


def fail_episode(eid: str = "", layout: str = LAYOUT, **kw) -> memory_pb2.EpisodeRecord:
    return episode_record(FAMILY, layout, 4, 4, FAIL_PATH, success=False, cause="hole", goal=GOAL,
                          entities=[("hole", HOLE)], episode_id=eid, **kw)


def win_episode(eid: str = "", layout: str = LAYOUT, **kw) -> memory_pb2.EpisodeRecord:
    return episode_record(FAMILY, layout, 4, 4, WIN_PATH, success=True, goal=GOAL, entities=[("hole", HOLE)],
                          episode_id=eid, **kw)


def _code(e: grpc.aio.AioRpcError) -> grpc.StatusCode:
    return e.code()


class MemoryServiceCompliance:
    """Behaviour every MemoryService must show. Subclasses provide the ``memory`` fixture."""

    async def test_ingest_query_shape_roundtrip(self, memory: Endpoint):
        async with MemoryClient(memory.address) as mem:
            s = await mem.ingest([fail_episode("f1"), win_episode("w1")])
            assert (s.received, s.accepted, len(s.rejected)) == (2, 2, 0)
            view = await mem.query(FAMILY, LAYOUT, top_k=2, overlay=True)
            assert view.danger.shape == view.affinity.shape == (4, 4)
            assert np.unravel_index(np.argmax(view.danger), (4, 4)) == HOLE
            assert view.affinity[GOAL] == view.affinity.max() > 0
            assert view.layout_version == 2 and view.memory_version >= 2
            assert view.overlay is not None and view.overlay.dtype == np.uint8 and view.overlay.shape[2] == 3
            assert view.raw is not None and view.raw.danger.dtype == 6 and view.raw.danger.codec != 1  # float16, compressed
            shaped = await mem.shape(trajectory_transitions(FAMILY, LAYOUT, WIN_PATH))
            assert len(shaped.shaping) == len(WIN_PATH) - 1

    async def test_bad_coordinates_rejected_per_episode_and_good_ones_kept(self, memory: Endpoint):
        async with MemoryClient(memory.address) as mem:
            bad = episode_record(FAMILY, LAYOUT, 4, 4, [(0, 0), (4, 0)], success=False, cause="hole", episode_id="bad")
            s = await mem.ingest([fail_episode("g1"), bad, win_episode("g2")])
            assert (s.received, s.accepted) == (3, 2)
            [rej] = s.rejected
            assert rej.index == 1 and rej.episode_id == "bad"
            assert rej.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert "(4,0)" in rej.status.message and "outside the 4x4 grid" in rej.status.message
            stats = await mem.stats()
            layout = next(a for a in stats.atlases if a.layout_key == LAYOUT)
            assert layout.episodes == 2

    async def test_empty_stream_is_invalid_argument(self, memory: Endpoint):
        async with MemoryClient(memory.address) as mem:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await mem.ingest([])
            assert _code(e.value) == grpc.StatusCode.INVALID_ARGUMENT and "empty" in e.value.details()
            assert (await mem.stats()).memory_version == 0

    async def test_unparseable_message_in_stream_is_rejected_alone(self, memory: Endpoint):
        async with make_channel(memory.address) as ch:
            call = ch.stream_unary("/atlasrl.v1.MemoryService/Ingest", request_serializer=None,
                                   response_deserializer=memory_pb2.IngestSummary.FromString)
            s = await call(iter([fail_episode("p1").SerializeToString(), b"\x0a\xff\xff junk",
                                 win_episode("p2").SerializeToString()]))
            assert (s.received, s.accepted) == (3, 2)
            assert s.rejected[0].index == 1 and "EpisodeRecord" in s.rejected[0].status.message

    async def test_oversized_episode_is_resource_exhausted(self, memory: Endpoint):
        async with MemoryClient(memory.address) as mem:
            long_path = [(0, 0)] * 100_000
            big = episode_record(FAMILY, LAYOUT, 4, 4, long_path, success=False, cause="timeout", episode_id="big")
            s = await mem.ingest([big])
            assert s.accepted == 0
            assert s.rejected[0].status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            assert "steps exceed the limit" in s.rejected[0].status.message

    async def test_malformed_key_frame_tensor(self, memory: Endpoint):
        async with MemoryClient(memory.address) as mem:
            rec = fail_episode("t1")
            rec.key_frames.add(step=1, image=codec.encode(np.zeros((8, 8, 3), np.uint8)))
            rec.key_frames[0].image.data = rec.key_frames[0].image.data[:-5]  # lies about its size
            wrong_dtype = fail_episode("t2")
            wrong_dtype.key_frames.add(step=0, image=codec.encode(np.zeros((8, 8, 3), np.float32)))
            s = await mem.ingest([rec, wrong_dtype, win_episode("t3")])
            assert s.accepted == 1 and [r.index for r in s.rejected] == [0, 1]
            assert "key_frames[0]" in s.rejected[0].status.message and "malformed tensor" in s.rejected[0].status.message
            assert "RGB uint8" in s.rejected[1].status.message
            assert (await mem.stats()).exemplars == 0

    async def test_unknown_family_is_not_found(self, memory: Endpoint):
        async with MemoryClient(memory.address) as mem:
            await mem.ingest([fail_episode("u1")])
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await mem.query("sokoban", "room-1", rows=6, cols=6)
            assert _code(e.value) == grpc.StatusCode.NOT_FOUND and "sokoban" in e.value.details()
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await mem.shape([transition("sokoban", "room-1", (0, 0), (0, 1), rows=6, cols=6)])
            assert _code(e.value) == grpc.StatusCode.NOT_FOUND

    async def test_query_and_shape_coordinates_outside_grid(self, memory: Endpoint):
        async with MemoryClient(memory.address) as mem:
            await mem.ingest([fail_episode("c1")])
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await mem.shape([transition(FAMILY, LAYOUT, (0, 0), (0, 1)), transition(FAMILY, LAYOUT, (0, 0), (0, 9))])
            assert _code(e.value) == grpc.StatusCode.INVALID_ARGUMENT and "transitions[1].next_cell" in e.value.details()
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await mem.query(FAMILY, LAYOUT, agent=(-1, 2))
            assert _code(e.value) == grpc.StatusCode.INVALID_ARGUMENT and "agent" in e.value.details()
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await mem.query(FAMILY, "unseen", rows=4, cols=4, goal=(7, 7))
            assert _code(e.value) == grpc.StatusCode.INVALID_ARGUMENT and "goal" in e.value.details()
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await mem.query(FAMILY, LAYOUT, frame=None, rows=5, cols=4)
            assert _code(e.value) == grpc.StatusCode.INVALID_ARGUMENT and "4x4" in e.value.details()
            assert (await mem.query(FAMILY, LAYOUT)).layout_version == 1  # nothing changed

    async def test_malformed_query_frame(self, memory: Endpoint):
        async with MemoryClient(memory.address) as mem:
            await mem.ingest([fail_episode("m1")])
            q = memory_pb2.MemoryQuery(family=FAMILY, layout_key=LAYOUT)
            q.frame.CopyFrom(codec.encode(np.zeros((4, 4, 3), np.uint8)))
            q.frame.dtype = 0  # type: ignore[assignment]  # an int is a valid enum value; the stubs ask for DType
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await mem.stub.Query(q)
            assert _code(e.value) == grpc.StatusCode.INVALID_ARGUMENT and "dtype" in e.value.details()

    async def test_unseen_layout_falls_back_to_family_atlas(self, memory: Endpoint):
        async with MemoryClient(memory.address) as mem:
            await mem.ingest([fail_episode("x1"), win_episode("x2")])
            view = await mem.query(FAMILY, "never-seen", rows=4, cols=4, goal=(2, 2))
            assert view.source == "family" and view.layout_version == 0
            # the goal-relative affinity peak moves with the goal
            assert np.unravel_index(np.argmax(view.affinity), (4, 4)) == (2, 2)
            empty = await mem.query(FAMILY, "never-seen", rows=4, cols=4)
            assert empty.source == "empty" and not empty.affinity.any()

    async def test_duplicates_are_not_applied_twice(self, memory: Endpoint):
        async with MemoryClient(memory.address) as mem:
            s1 = await mem.ingest([fail_episode("d1")])
            s2 = await mem.ingest([fail_episode("d1"), fail_episode("d2")])
            assert (s1.accepted, s2.accepted, s2.duplicates) == (1, 1, 1)
            assert s2.memory_version == 2

    async def test_concurrent_ingest_from_several_clients(self, memory: Endpoint):
        clients, per_client = 6, 15

        async def one(c: int):
            async with MemoryClient(memory.address) as mem:
                for i in range(per_client):
                    ep = (win_episode if i % 3 == 0 else fail_episode)(f"c{c}-{i}", layout=f"L{i % 2}")
                    s = await mem.ingest([ep])
                    assert s.accepted == 1

        await asyncio.gather(*(one(c) for c in range(clients)))
        async with MemoryClient(memory.address) as mem:
            stats = await mem.stats()
            assert stats.memory_version == stats.episodes_ingested == clients * per_client
            layouts = {a.layout_key: a for a in stats.atlases}
            assert layouts["L0"].episodes + layouts["L1"].episodes == clients * per_client
            assert layouts[""].episodes == clients * per_client  # family atlas saw every episode
            assert layouts["L0"].version == layouts["L0"].episodes

    async def test_reset_forgets_but_versions_grow(self, memory: Endpoint):
        async with MemoryClient(memory.address) as mem:
            await mem.ingest([fail_episode("r1"), fail_episode("r2")])
            before = await mem.query(FAMILY, LAYOUT)
            r = await mem.reset(FAMILY, LAYOUT)
            assert r.atlases_removed == 1 and r.memory_version > before.memory_version
            await mem.ingest([win_episode("r3")])
            after = await mem.query(FAMILY, LAYOUT)
            assert after.layout_version > before.layout_version
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await mem.reset("", LAYOUT)
            assert _code(e.value) == grpc.StatusCode.INVALID_ARGUMENT

    async def test_metrics_exposed(self, memory: Endpoint):
        if memory.metrics_port is None:
            pytest.skip("server exposes no /metrics port")
        async with MemoryClient(memory.address) as mem:
            await mem.ingest([fail_episode("mx")])
            await mem.query(FAMILY, LAYOUT)
            await mem.shape([transition(FAMILY, LAYOUT, (0, 0), (0, 1))])
            with pytest.raises(grpc.aio.AioRpcError):
                await mem.query("nope", LAYOUT, rows=4, cols=4)
        text = urllib.request.urlopen(f"http://127.0.0.1:{memory.metrics_port}/metrics").read().decode()
        assert 'atlasrl_memory_episodes_ingested_total{family="gridworld"} 1.0' in text
        assert "atlasrl_memory_version 1.0" in text
        assert "atlasrl_memory_query_latency_seconds_count 1.0" in text
        assert "atlasrl_memory_shape_latency_seconds_count 1.0" in text
        assert 'atlasrl_memory_errors_total{code="NOT_FOUND",method="Query"} 1.0' in text

    async def test_health_serving(self, memory: Endpoint):
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        async with make_channel(memory.address) as ch:
            h = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="atlasrl.v1.MemoryService"))
            assert h.status == health_pb2.HealthCheckResponse.SERVING
            assert (await memory_pb2_grpc.MemoryServiceStub(ch).Stats(memory_pb2.MemoryStatsRequest())).memory_version == 0
