"""Run the critic role: load the backend, serve CriticService, register with the coordinator.

    server = CriticServer(CriticConfig(backend="oracle"))
    await server.start()          # server.address -> "127.0.0.1:PORT"
    ...
    await server.stop()

``run(cfg)`` is what ``atlasrl critic`` calls: it serves until SIGTERM/SIGINT.
"""
from __future__ import annotations

import asyncio
import logging

from atlasrl.critic.backends import Backend, make_backend
from atlasrl.critic.batcher import Batcher
from atlasrl.critic.config import CriticConfig
from atlasrl.critic.service import CriticServicer
from atlasrl.metrics import Metrics
from atlasrl.rpc import RpcServer
from atlasrl.v1 import critic_pb2

log = logging.getLogger("atlasrl.critic")
SERVICE = critic_pb2.DESCRIPTOR.services_by_name["CriticService"]


class CriticServer:
    def __init__(self, cfg: CriticConfig, backend: Backend | None = None):
        self.cfg = cfg
        self.backend = backend or make_backend(cfg)
        self.metrics = Metrics("critic")
        self.rpc = RpcServer(cfg.server, self.metrics)
        self.batcher = Batcher(self.backend, max_batch=cfg.max_batch, max_wait_ms=cfg.max_wait_ms)
        self.servicer = CriticServicer(cfg, self.backend, self.batcher, self.metrics)
        self.rpc.add(self.servicer, SERVICE)

    @property
    def address(self) -> str:
        return self.rpc.address

    async def start(self) -> int:
        self.batcher.start()
        port = await self.rpc.start()
        log.info("critic backend %s (%s) on %s", self.backend.name, self.backend.model or "no model", self.backend.device)
        return port

    async def stop(self, grace: float | None = None) -> None:
        await self.rpc.stop(grace)
        await self.batcher.stop()


async def run(cfg: CriticConfig, on_ready=None) -> None:
    from atlasrl.clients.coordinator import serve_registered

    server = CriticServer(cfg)
    await serve_registered(server, (lambda: _register(cfg, server)) if cfg.coordinator else None, on_ready)


async def _register(cfg: CriticConfig, server: CriticServer):
    """Join the run through the coordinator's client, so actors find this critic in their assignment."""
    from atlasrl.clients.coordinator import RoleRegistration

    assert cfg.coordinator is not None
    metrics = f"{cfg.server.metrics_host}:{server.rpc.metrics_port}" if server.rpc.metrics_port else ""

    def report(reg) -> None:
        reg.counters["critic_frames_scored"] = server.batcher.frames
        reg.counters["critic_batches"] = server.batcher.batches

    reg = RoleRegistration(cfg.coordinator, role="critic", name=f"critic-{server.rpc.port}", address=server.address,
                           metrics_address=metrics, report=report)
    await reg.start()
    return reg


def main_sync(cfg: CriticConfig, on_ready=None) -> None:
    asyncio.run(run(cfg, on_ready))
