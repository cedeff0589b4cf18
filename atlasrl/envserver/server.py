"""Run the env server: EnvService + dm_env_rpc Environment on one RpcServer, envs in a WorkerPool
(plus OpenEnv over HTTP/WebSocket on ``cfg.openenv_port`` when set: openenv_service.py).

    server = EnvServer(EnvServerConfig(port=0, workers=0))
    await server.start()                    # server.address -> "127.0.0.1:PORT"
    ...
    await server.stop()                     # health NOT_SERVING, drain streams, stop workers

``serve(cfg)`` is the CLI's loop: start, stop gracefully on SIGTERM/SIGINT.
"""
from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

from dm_env_rpc.v1 import dm_env_rpc_pb2

from atlasrl.envserver import registry
from atlasrl.envserver.config import EnvServerConfig
from atlasrl.envserver.dm_env_rpc_service import DmEnvRpcServicer
from atlasrl.envserver.service import EnvServicer
from atlasrl.envserver.sessions import EnvManager, EnvMetrics
from atlasrl.envserver.workers import WorkerPool
from atlasrl.metrics import Metrics
from atlasrl.rpc import RpcServer
from atlasrl.v1 import env_pb2

if TYPE_CHECKING:
    from atlasrl.envserver.openenv_service import OpenEnvServer

log = logging.getLogger("atlasrl.envserver")


def check_env_names(cfg: EnvServerConfig) -> None:
    """Fail at start-up on an --env entry that names no registered id or id prefix."""
    ids = registry.list_ids()
    prefixes = set(registry.prefixes()) | {i.split(":", 1)[0] for i in ids if ":" in i}
    bad = [e for e in cfg.envs if e not in ids and e not in prefixes]
    if bad:
        raise ValueError(f"--env names unknown env ids {bad}; registered: {', '.join(sorted(set(ids) | prefixes))}")


class EnvServer:
    def __init__(self, cfg: EnvServerConfig, metrics: Metrics | None = None):
        check_env_names(cfg)
        self.cfg = cfg
        self.metrics = metrics or Metrics("envserver")
        self.pool = WorkerPool(cfg.worker_count(), cfg.devices, cfg.threads, int(cfg.frame_cache_mb * 2**20))
        self.manager = EnvManager(cfg, self.pool, EnvMetrics(self.metrics))
        self.env_service = EnvServicer(self.manager, cfg.idle_timeout_s)
        self.dm_service = DmEnvRpcServicer(self.manager, cfg.idle_timeout_s)
        self.rpc = RpcServer(cfg.server_config(), self.metrics)
        self.rpc.add(self.env_service, env_pb2.DESCRIPTOR.services_by_name["EnvService"])
        self.rpc.add(self.dm_service, dm_env_rpc_pb2.DESCRIPTOR.services_by_name["Environment"])
        self.openenv: OpenEnvServer | None = None  # OpenEnvServer when cfg.openenv_port is set (imports openenv-core only then)
        self._stopping: asyncio.Task | None = None

    @property
    def address(self) -> str:
        return self.rpc.address

    @property
    def metrics_port(self) -> int | None:
        return self.rpc.metrics_port

    async def start(self) -> int:
        await self.pool.start()
        try:
            port = await self.rpc.start()
        except BaseException:
            await self.pool.stop()
            raise
        if self.cfg.openenv_port is not None:
            from atlasrl.envserver.openenv_service import OpenEnvServer

            try:
                self.openenv = OpenEnvServer(self.manager, self.cfg)
                await self.openenv.start()
            except BaseException:
                await self.rpc.stop(0)
                await self.pool.stop()
                raise
        return port

    async def stop(self, grace: float | None = None) -> None:
        """Graceful: health NOT_SERVING, no new streams, in-flight requests answered, envs closed, workers stopped."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(grace))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace: float | None) -> None:
        grace = self.cfg.grace_s if grace is None else grace
        deadline = asyncio.get_running_loop().time() + grace
        await self.rpc.set_not_serving()
        self.manager.draining.set()
        self.env_service.drain()
        self.dm_service.drain()
        openenv_stop = asyncio.ensure_future(self.openenv.stop()) if self.openenv is not None else None
        # Streams answer the request in hand, free their envs and answer later requests with
        # UNAVAILABLE; the server runs until their clients end them or the grace runs out.
        while self.env_service.open_streams and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        await self.rpc.stop(max(0.0, deadline - asyncio.get_running_loop().time()))
        if openenv_stop is not None:
            await openenv_stop
        await self.pool.stop()

    async def wait(self) -> None:
        await self.rpc.wait()
        if self._stopping is not None:
            await self._stopping


async def serve(cfg: EnvServerConfig, on_ready=None) -> None:
    """Run until SIGTERM/SIGINT, then stop gracefully; registers with the coordinator when one is given."""
    server = EnvServer(cfg)
    await server.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(server.stop()))
    if on_ready:
        on_ready(server)
    registration = await _register(cfg, server) if cfg.coordinator else None
    try:
        await server.wait()
    finally:
        if registration is not None:
            await registration.close()
        await server.stop()


async def _register(cfg: EnvServerConfig, server: EnvServer):
    from atlasrl.clients.coordinator import RoleRegistration

    assert cfg.coordinator is not None  # the caller checks cfg.coordinator
    metrics = f"{cfg.server_config().metrics_host}:{server.metrics_port}" if server.metrics_port else ""
    reg = RoleRegistration(cfg.coordinator, role="envserver", name=f"envserver-{server.rpc.port}", address=server.address,
                           metrics_address=metrics, capacity=cfg.max_envs, capabilities=cfg.envs or registry.list_ids(),
                           report=lambda r: _report(r, server))
    await reg.start()
    return reg


def _report(reg, server: EnvServer) -> None:
    """Heartbeats carry cumulative env steps and the live env count."""
    reg.counters["env_steps"] = server.manager.steps_total
    reg.gauges["live_envs"] = float(server.manager.live)
