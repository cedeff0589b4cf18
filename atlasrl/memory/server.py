"""Run the memory role: restore, serve, snapshot periodically and on shutdown.

    server = MemoryServer(MemoryConfig(data_dir=Path("runs/memory")))
    await server.start()          # restores the last snapshot, binds, starts snapshots
    ...                           # server.address -> "127.0.0.1:PORT"
    await server.stop()           # final snapshot, then the port closes

``run(cfg)`` is what ``atlasrl memory`` calls: it serves until SIGTERM/SIGINT.
"""
from __future__ import annotations

import asyncio
import logging

from atlasrl.memory import store
from atlasrl.memory.config import MemoryConfig
from atlasrl.memory.service import MemoryServicer
from atlasrl.memory.snapshotter import Snapshotter
from atlasrl.memory.state import MemoryState
from atlasrl.metrics import Metrics
from atlasrl.rpc import RpcServer
from atlasrl.v1 import memory_pb2

log = logging.getLogger("atlasrl.memory")
SERVICE = memory_pb2.DESCRIPTOR.services_by_name["MemoryService"]


class MemoryServer:
    def __init__(self, cfg: MemoryConfig):
        self.cfg = cfg
        self.state = MemoryState(cfg)
        self.metrics = Metrics("memory")
        self.rpc = RpcServer(cfg.server, self.metrics)
        self.snapshotter = Snapshotter(self.state, cfg.data_dir, cfg.snapshot_interval_s)
        self.servicer: MemoryServicer | None = None

    @property
    def address(self) -> str:
        return self.rpc.address

    @property
    def metrics_port(self) -> int | None:
        return self.rpc.metrics_port

    async def start(self) -> int:
        if self.cfg.data_dir is not None:
            data_dir = self.cfg.data_dir
            blob = store.restore(self.state, data_dir)
            if blob is not None:
                self.snapshotter.loaded(blob, float(blob.manifest.get("written_unix", 0.0)))
                log.info("restored memory version %d from %s", blob.version, data_dir)
            floor = store.read_version_floor(data_dir)
            if floor > self.state.version:
                log.warning("unclean shutdown: versions %d..%d may have been used; resuming above them",
                            self.state.version + 1, floor)
                self.state.skip_versions(floor)
            self.state.on_reserve = lambda v: store.write_version_floor(data_dir, v)
            self.state.reserve()
        self.servicer = MemoryServicer(self.cfg, self.state, self.snapshotter, self.metrics)
        self.snapshotter.on_written = self.servicer.snapshot_written
        self.rpc.add(self.servicer, SERVICE)
        port = await self.rpc.start()
        self.snapshotter.start()
        return port

    async def stop(self, grace: float | None = None) -> None:
        await self.rpc.stop(grace)
        await self.snapshotter.stop()
        await self.snapshotter.snapshot_if_dirty()
        if self.cfg.data_dir is not None and self.snapshotter.last_version == self.state.version:
            store.write_version_floor(self.cfg.data_dir, self.state.version)  # clean: nothing beyond the snapshot


async def run(cfg: MemoryConfig, on_ready=None) -> None:
    from atlasrl.clients.coordinator import serve_registered

    server = MemoryServer(cfg)
    await serve_registered(server, (lambda: _register(cfg, server)) if cfg.coordinator else None, on_ready)


async def _register(cfg: MemoryConfig, server: MemoryServer):
    """Join the run through the coordinator's client (clients/coordinator.py)."""
    from atlasrl.clients.coordinator import RoleRegistration

    assert cfg.coordinator is not None  # the caller checks cfg.coordinator
    metrics = f"{cfg.server.metrics_host}:{server.metrics_port}" if server.metrics_port else ""
    reg = RoleRegistration(cfg.coordinator, role="memory", name=f"memory-{server.rpc.port}", address=server.address,
                           metrics_address=metrics, report=lambda r: _report(r, server))
    await reg.start()
    return reg


def _report(reg, server: MemoryServer) -> None:
    """Standard names of clients/coordinator.py: counter `queries`, gauge `atlas_cells`; plus memory figures."""
    svc = server.servicer
    assert svc is not None  # started
    reg.counters["queries"] = svc.queries_total  # this process only: counters are cumulative per process
    reg.counters["memory_episodes_ingested"] = svc.accepted_total
    reg.gauges["atlas_cells"] = float(sum(int((a.visits > 0).sum()) for a in server.state.layouts.values()))
    reg.gauges["memory_version"] = float(server.state.version)
    reg.gauges["memory_layout_atlases"] = float(len(server.state.layouts))


def main_sync(cfg: MemoryConfig, on_ready=None) -> None:
    asyncio.run(run(cfg, on_ready))
