"""Limits and request-level validation on a server with small bounds (real gRPC, port 0)."""
import grpc
import numpy as np
import pytest

from atlasrl.clients.memory import MemoryClient, episode_record, transition
from atlasrl.memory.compliance import FAMILY, LAYOUT, fail_episode, win_episode
from atlasrl.memory.config import LimitsConfig, MemoryConfig
from atlasrl.memory.server import MemoryServer
from atlasrl.rpc import ServerConfig


@pytest.fixture
async def mem():
    cfg = MemoryConfig(server=ServerConfig(port=0, max_message_bytes=256 * 1024),
                       limits=LimitsConfig(max_key_frames=2, max_frame_bytes=64 * 1024, max_shape_batch=8, max_grid_side=16))
    server = MemoryServer(cfg)
    await server.start()
    async with MemoryClient(server.address) as client:
        yield client
    await server.stop(0)


async def test_transport_oversize_ends_stream_and_resend_is_deduplicated(mem):
    huge = fail_episode("huge", frames=[(1, np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8))])
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await mem.ingest([fail_episode("ok1"), huge])
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    s = await mem.ingest([fail_episode("ok1"), win_episode("ok2")])
    assert s.duplicates + s.accepted == 2 and s.accepted >= 1
    assert (await mem.stats()).episodes_ingested == 2


async def test_episode_bounds(mem):
    frame = np.zeros((8, 8, 3), np.uint8)
    big_frame = np.zeros((160, 160, 3), np.uint8)  # 76,800 bytes > 64 KiB frame limit (zstd makes it small on the wire)
    s = await mem.ingest([
        fail_episode("frames", frames=[(0, frame)] * 3),
        fail_episode("bigframe", frames=[(0, big_frame)]),
        episode_record(FAMILY, "wide", 4, 17, [(0, 0)], success=False, cause="hole"),
        episode_record(FAMILY, LAYOUT, 4, 4, [], success=False, cause="hole", episode_id="nosteps"),
        episode_record(FAMILY, LAYOUT, 4, 4, [(0, 0)], success=True, cause="hole", episode_id="contradiction"),
        episode_record("", LAYOUT, 4, 4, [(0, 0)], success=False, episode_id="nofamily"),
        episode_record(FAMILY, LAYOUT, 5, 4, [(0, 0)], success=False, episode_id="resized"),
    ])
    codes = [grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]] * 3 + [grpc.StatusCode.INVALID_ARGUMENT.value[0]] * 3
    got = {r.index: (r.status.code, r.status.message) for r in s.rejected}
    assert s.accepted == 1 and sorted(got) == [0, 1, 2, 3, 4, 5]  # "resized" is the first of its layout: accepted
    assert [got[i][0] for i in range(6)] == codes
    assert "3 key frames exceed the limit of 2" in got[0][1]
    assert "decode limit" in got[1][1]
    assert "max_grid_side 16" in got[2][1]
    assert "steps is empty" in got[3][1]
    assert "success is true but terminal_cause is 'hole'" in got[4][1]
    assert "family is required" in got[5][1]
    s2 = await mem.ingest([episode_record(FAMILY, LAYOUT, 4, 4, [(0, 0)], success=False, episode_id="resized2")])
    assert "5x4 grid in memory but the episode says 4x4" in s2.rejected[0].status.message


async def test_request_validation(mem):
    await mem.ingest([fail_episode("a")])
    cases = [
        (mem.query(FAMILY, "unseen"), grpc.StatusCode.INVALID_ARGUMENT, "grid_rows and grid_cols are required"),
        (mem.query(FAMILY, ""), grpc.StatusCode.INVALID_ARGUMENT, "layout_key is required"),
        (mem.shape([transition(FAMILY, LAYOUT, (0, 0), (0, 1))] * 9), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit is 8"),
        (mem.shape([transition(FAMILY, LAYOUT, (0, 0), (0, 1))], gamma=1.5), grpc.StatusCode.INVALID_ARGUMENT, "gamma"),
        (mem.shape([transition(FAMILY, "unseen", (0, 0), (0, 1))]), grpc.StatusCode.INVALID_ARGUMENT, "transitions[0]"),
        (mem.reset("sokoban"), grpc.StatusCode.NOT_FOUND, "sokoban"),
    ]
    for call, code, text in cases:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == code and text in e.value.details(), (code, e.value.details())
    assert (await mem.query(FAMILY, LAYOUT)).layout_version == 1
