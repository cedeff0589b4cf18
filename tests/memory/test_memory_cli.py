"""The real CLI: `python -m atlasrl.memory` joins a real coordinator; `atlasrl debug memory` writes PNGs and prints skills."""
import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from atlasrl.clients.memory import MemoryClient
from atlasrl.coordinator.config import CoordinatorConfig
from atlasrl.coordinator.server import CoordinatorServer
from atlasrl.memory.compliance import fail_episode, win_episode
from atlasrl.memory.config import MemoryConfig
from atlasrl.memory.server import MemoryServer
from atlasrl.rpc import ServerConfig, make_channel
from atlasrl.v1 import coordinator_pb2, coordinator_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


async def test_registers_with_coordinator_and_reports(tmp_path):
    coord = CoordinatorServer(CoordinatorConfig(server=ServerConfig(port=0), state_dir=tmp_path / "c", lease_ttl_s=1.0))
    await coord.start()
    proc = subprocess.Popen([sys.executable, "-m", "atlasrl.memory", "--port", "0", "--print-port", "--coordinator",
                             coord.address], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = await asyncio.to_thread(proc.stdout.readline)
        address = f"127.0.0.1:{int(line.split()[1])}"
        async with MemoryClient(address) as mem:
            await mem.ingest([fail_episode("k1"), win_episode("k2")])
            await mem.query("gridworld", "4x4-a")
        async with make_channel(coord.address) as ch:
            stub = coordinator_pb2_grpc.CoordinatorServiceStub(ch)
            for _ in range(300):  # generous: shared CI cores
                st = await stub.GetStatus(coordinator_pb2.GetStatusRequest())
                mine = [m for m in st.members if m.role == coordinator_pb2.ROLE_MEMORY]
                if mine and mine[0].counters.get("queries", 0) >= 1:
                    break
                await asyncio.sleep(0.1)
        assert mine and mine[0].address == address
        assert mine[0].counters["queries"] == 1 and mine[0].counters["memory_episodes_ingested"] == 2
        assert mine[0].gauges["memory_version"] == 2 and mine[0].gauges["atlas_cells"] == 9
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 30)
        await coord.stop(0)
    assert proc.returncode == 0


async def test_debug_memory_writes_pngs_and_prints_skills(tmp_path):
    server = MemoryServer(MemoryConfig(server=ServerConfig(port=0)))
    await server.start()
    try:
        frame = np.full((64, 64, 3), 90, np.uint8)
        async with MemoryClient(server.address) as mem:
            await mem.ingest([fail_episode(f"f{i}", frames=[(2, frame)]) for i in range(4)] + [win_episode("w")])
        import typer

        from atlasrl.cli import debug_memory

        app = typer.Typer()  # the debug command alone: other roles' CLI modules are not under test here
        debug_app = typer.Typer()
        debug_memory.register(debug_app)
        app.add_typer(debug_app, name="debug")
        out = tmp_path / "png"
        r = await asyncio.to_thread(CliRunner().invoke, app, ["debug", "memory", "--addr", server.address, "--env",
                                                              "gridworld", "--layout", "4x4-a", "--save", str(out)])
        assert r.exit_code == 0, r.output
        assert "source=layout" in r.output or "source=blended" in r.output
        assert "cell (1,1) ended 100% of 4 visits in a hole: avoid it" in r.output
        danger = np.asarray(Image.open(out / "danger.png"))
        assert danger.shape == (128, 128, 3)
        # the hole cell (1,1) is the reddest block of the heatmap
        blocks = danger[..., 0].reshape(4, 32, 4, 32).mean(axis=(1, 3))
        assert np.unravel_index(np.argmax(blocks), (4, 4)) == (1, 1)
        assert (out / "overlay.png").exists() and (out / "affinity.png").exists()
        assert list(out.glob("exemplar_*_failure.png"))
        bad = await asyncio.to_thread(CliRunner().invoke, app, ["debug", "memory", "--addr", server.address, "--env",
                                                                "nope", "--layout", "x", "--rows", "4", "--cols", "4"])
        assert bad.exit_code == 1 and "NOT_FOUND" in bad.output
    finally:
        await server.stop(0)
