"""State survives restarts; a process killed in the middle of a snapshot never damages the last good one."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from atlasrl.clients.memory import MemoryClient, SyncMemoryClient, episode_record
from atlasrl.memory import store
from atlasrl.memory.config import MemoryConfig
from atlasrl.memory.server import MemoryServer
from atlasrl.memory.state import MemoryState
from atlasrl.rpc import ServerConfig

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FRAME = np.zeros((32, 32, 3), np.uint8)
FRAME[8:16, 8:16] = (200, 30, 30)


def episodes(prefix: str, n: int):
    out = []
    for i in range(n):
        win = i % 3 == 0
        path = [(0, 0), (1, 0), (2, 0), (3, 0), (3, 1), (3, 2), (3, 3)] if win else [(0, 0), (0, 1), (1, 1)]
        out.append(episode_record("fl", f"L{i % 2}", 4, 4, path, success=win, cause="" if win else "hole", goal=(3, 3),
                                  entities=[("hole", (1, 1))], frames=[(len(path) - 1, FRAME)], episode_id=f"{prefix}{i}"))
    return out


async def test_restart_restores_maps_versions_exemplars(tmp_path):
    cfg = MemoryConfig(server=ServerConfig(port=0), data_dir=tmp_path, snapshot_interval_s=3600)
    a = MemoryServer(cfg)
    await a.start()
    async with MemoryClient(a.address) as mem:
        await mem.ingest(episodes("a", 9))
        before = await mem.query("fl", "L0", top_k=4)
        stats_before = await mem.stats()
    await a.stop(0)  # shutdown snapshot
    assert (tmp_path / store.SNAPSHOT_NAME).exists()

    b = MemoryServer(cfg)
    await b.start()
    async with MemoryClient(b.address) as mem:
        after = await mem.query("fl", "L0", top_k=4)
        np.testing.assert_array_equal(after.danger, before.danger)
        np.testing.assert_array_equal(after.affinity, before.affinity)
        assert (after.layout_version, after.family_version, after.memory_version) == \
               (before.layout_version, before.family_version, before.memory_version)
        assert [s.text for s in after.skills] == [s.text for s in before.skills]
        assert [e["caption"] for e in after.exemplars] == [e["caption"] for e in before.exemplars]
        stats = await mem.stats()
        assert stats.episodes_ingested == stats_before.episodes_ingested == 9
        assert stats.last_snapshot_version == 9
        dup = await mem.ingest(episodes("a", 2))  # dedup window survives too
        assert dup.duplicates == 2 and dup.accepted == 0
        more = await mem.ingest(episodes("b", 2))
        assert more.memory_version == 11  # versions continue to grow
    await b.stop(0)


async def test_periodic_snapshot_without_shutdown(tmp_path):
    server = MemoryServer(MemoryConfig(server=ServerConfig(port=0), data_dir=tmp_path, snapshot_interval_s=0.05))
    await server.start()
    try:
        async with MemoryClient(server.address) as mem:
            await mem.ingest(episodes("p", 3))
            import asyncio
            for _ in range(400):  # generous: shared CI cores
                blob = store.read_snapshot(tmp_path)
                if blob is not None and blob.version == 3:
                    break
                await asyncio.sleep(0.05)
            assert blob is not None and blob.version == 3
            info = await mem.snapshot()
            assert info.memory_version == 3 and info.bytes > 0 and info.path.endswith(store.SNAPSHOT_NAME)
    finally:
        await server.stop(0)


async def test_snapshot_rpc_without_data_dir_is_failed_precondition():
    import grpc

    server = MemoryServer(MemoryConfig(server=ServerConfig(port=0)))
    await server.start()
    try:
        async with MemoryClient(server.address) as mem:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await mem.snapshot()
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "--data-dir" in e.value.details()
    finally:
        await server.stop(0)


def _start_cli(data_dir: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "atlasrl.memory", "--port", "0", "--data-dir", str(data_dir),
                             "--print-port"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise AssertionError(f"memory did not start: {line!r} {proc.stderr.read()}")
    return proc, f"127.0.0.1:{int(line.split()[1])}"


def test_cli_process_restart_after_sigterm(tmp_path):
    proc, addr = _start_cli(tmp_path)
    try:
        with SyncMemoryClient(addr) as mem:
            assert mem.ingest(episodes("c", 5)).accepted == 5
            danger = mem.query("fl", "L1").danger
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    proc, addr = _start_cli(tmp_path)
    try:
        with SyncMemoryClient(addr) as mem:
            stats = mem.stats()
            assert stats.memory_version == stats.episodes_ingested == 5  # clean restart: no version gap
            np.testing.assert_array_equal(mem.query("fl", "L1").danger, danger)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_sigkill_mid_snapshot_keeps_last_good_snapshot(tmp_path):
    """Kill a process that is writing snapshots back to back, at random moments, until a kill tore a write."""
    rng = random.Random(7)
    last_done, torn_writes = 0, 0
    for kills in range(1, 13):
        if kills > 3 and torn_writes >= 1:
            break
        child = subprocess.Popen([sys.executable, str(HERE / "snapshot_writer.py"), str(tmp_path)], cwd=ROOT,
                                 stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        first = child.stdout.readline()
        assert first.startswith("v "), first
        time.sleep(rng.uniform(0.05, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait()
        done = [int(line.split()[1]) for line in [first] + child.stdout.read().splitlines() if line.startswith("v ")]
        child.stdout.close()
        torn_writes += any(p.name.startswith(store.TMP_PREFIX) for p in tmp_path.iterdir())
        state = MemoryState(MemoryConfig())
        blob = store.restore(state, tmp_path)  # loads the last complete snapshot and clears the torn temp file
        assert blob is not None and blob.version >= max(done) >= last_done  # versions on disk only grow
        assert state.episodes_ingested == state.version == state.layouts[("toy", "4x4")].episodes
        v = state.version  # episode n succeeds when n is even; 3 distinct frames each, capacity 64 per outcome
        assert state.bank.count() == min(3 * ((v + 1) // 2), 64) + min(3 * (v // 2), 64)
        assert not any(p.name.startswith(store.TMP_PREFIX) for p in tmp_path.iterdir())
        last_done = blob.version
    assert torn_writes >= 1, "no kill landed inside a snapshot write; the test proved nothing"


def test_versions_never_repeat_after_a_crash(tmp_path):
    """SIGKILL after episodes the last snapshot does not hold: the restart resumes above every version handed out."""
    proc, addr = _start_cli(tmp_path)
    try:
        with SyncMemoryClient(addr) as mem:
            mem.ingest(episodes("s", 3))
            assert mem.snapshot().memory_version == 3
            seen = mem.ingest(episodes("u", 4)).memory_version           # 7, only in RAM
            seen_layout = mem.query("fl", "L0").layout_version
    finally:
        proc.kill()
        proc.wait(timeout=30)
    proc, addr = _start_cli(tmp_path)
    try:
        with SyncMemoryClient(addr) as mem:
            stats = mem.stats()
            assert stats.episodes_ingested == 3                          # the 4 unsnapshotted episodes are lost ...
            assert stats.memory_version > seen                           # ... but their versions are never reused
            assert mem.query("fl", "L0").layout_version > seen_layout
            assert mem.ingest(episodes("u", 4)).accepted == 4            # and they can be sent again
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    proc, addr = _start_cli(tmp_path)                                    # a clean restart keeps the numbers as they were
    try:
        with SyncMemoryClient(addr) as mem:
            before = mem.stats().memory_version
            assert mem.ingest(episodes("v", 1)).memory_version == before + 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
