"""Run the coordinator: `await serve(cfg)` or `atlasrl coordinator ...`."""
from __future__ import annotations

import asyncio

from atlasrl.coordinator.config import CoordinatorConfig
from atlasrl.coordinator.service import CoordinatorServicer
from atlasrl.coordinator.state import StateStore
from atlasrl.metrics import Metrics
from atlasrl.rpc import RpcServer
from atlasrl.v1 import coordinator_pb2

SERVICE = coordinator_pb2.DESCRIPTOR.services_by_name["CoordinatorService"]
DB_NAME = "coordinator.sqlite"


class CoordinatorServer:
    """Owns the store, the servicer and the gRPC server; `start()` then `stop()`."""

    def __init__(self, cfg: CoordinatorConfig):
        self.cfg = cfg
        self.store = StateStore(cfg.state_dir / DB_NAME)
        if cfg.reopen_stopped and self.store.run_state == "stopping":
            self.store.set_run_state("running")
        self.metrics = Metrics("coordinator")
        self.servicer = CoordinatorServicer(cfg, self.store, self.metrics)
        self.rpc = RpcServer(cfg.server, self.metrics)
        self.rpc.add(self.servicer, SERVICE)

    @property
    def address(self) -> str:
        return self.rpc.address

    async def start(self) -> int:
        port = await self.rpc.start()
        self.servicer.start_background()
        return port

    async def stop(self, grace: float | None = None) -> None:
        await self.servicer.stop_background()
        await self.rpc.stop(grace)
        self.store.close()


async def serve(cfg: CoordinatorConfig) -> None:
    """Serve until SIGINT/SIGTERM."""
    server = CoordinatorServer(cfg)
    await server.start()
    server.rpc.stop_on_signals()
    print(f"coordinator serving on {server.address} (metrics :{server.rpc.metrics_port}, state {server.store.path})", flush=True)
    try:
        await server.rpc.wait()
    finally:
        await server.servicer.stop_background()
        server.store.close()


def main(cfg: CoordinatorConfig) -> None:
    asyncio.run(serve(cfg))
