"""The one way atlasrl builds a gRPC server.

    server = RpcServer(ServerConfig(port=50051, metrics_port=9101), Metrics("envserver"))
    server.add(EnvServicer(...), env_pb2.DESCRIPTOR.services_by_name["EnvService"])
    port = await server.start()
    await server.wait()           # until stop() / SIGTERM

Every server gets explicit message-size limits, keepalive, a per-connection
stream cap, the standard health service (grpc.health.v1.Health) with every added
service marked SERVING, server reflection, the shared request metrics and the
/metrics endpoint. Security (TLS, tokens) is applied here too, so roles inherit it.
"""
from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from atlasrl.metrics import Metrics
from atlasrl.rpc.config import ServerConfig
from atlasrl.rpc.handlers import service_handler
from atlasrl.rpc.options import server_options
from atlasrl.rpc.security import check_bind, default_security, is_loopback, load_tokens, server_credentials

log = logging.getLogger("atlasrl.rpc")


class RpcServer:
    def __init__(self, cfg: ServerConfig, metrics: Metrics, *, interceptors: list | None = None):
        self.cfg = cfg
        self.metrics = metrics
        self.security = cfg.security or default_security()
        self._credentials = server_credentials(self.security)
        self._tokens = load_tokens(self.security)
        guards = []
        if self._tokens or cfg.max_sessions_per_client is not None or cfg.session_idle_timeout_s is not None:
            from atlasrl.rpc.auth import ServerGuard

            guards.append(ServerGuard(self.security, self._tokens, method_roles=cfg.method_roles, metrics=metrics,
                                      max_sessions_per_client=cfg.max_sessions_per_client,
                                      idle_timeout_s=cfg.session_idle_timeout_s))
        self._server = grpc.aio.server(options=server_options(cfg), interceptors=guards + list(interceptors or []))
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._names: list[str] = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._stopped = asyncio.Event()

    def add(self, servicer, descriptor: ServiceDescriptor) -> None:
        """Serve every method of ``descriptor`` from ``servicer`` (async methods)."""
        self._server.add_generic_rpc_handlers((service_handler(descriptor, servicer, self.metrics),))
        self._names.append(descriptor.full_name)

    @property
    def address(self) -> str:
        return f"{self.cfg.host}:{self.port}"

    async def start(self) -> int:
        reflection.enable_server_reflection(self._names + [reflection.SERVICE_NAME], self._server)
        target = f"[{self.cfg.host}]:{self.cfg.port}" if ":" in self.cfg.host else f"{self.cfg.host}:{self.cfg.port}"
        check_bind(self.cfg.host, self.security, tls=self._credentials is not None, tokens=bool(self._tokens))
        if self._credentials is not None:
            self.port = self._server.add_secure_port(target, self._credentials)
        else:
            self.port = self._server.add_insecure_port(target)
        if not self.port:
            raise OSError(f"could not bind gRPC server to {target}")
        await self._server.start()
        for name in self._names:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        if self.cfg.metrics_port is not None:
            if not is_loopback(self.cfg.metrics_host):
                log.warning("Prometheus /metrics is served on non-loopback %s without authentication", self.cfg.metrics_host)
            self.metrics_port = self.metrics.serve(self.cfg.metrics_host, self.cfg.metrics_port)
        mode = ("mTLS" if self.security.mtls else "TLS") if self._credentials is not None else "plaintext"
        log.info("serving %s on %s:%s (%s, %s; metrics %s)", ", ".join(self._names[1:]), self.cfg.host, self.port, mode,
                 "tokens" if self._tokens else "no tokens", self.metrics_port)
        return self.port

    async def set_not_serving(self) -> None:
        """Health NOT_SERVING for every service (first step of a graceful stop; stop() does it too)."""
        await self._health.enter_graceful_shutdown()

    async def stop(self, grace: float | None = None) -> None:
        if self._stopped.is_set():
            return
        await self._health.enter_graceful_shutdown()
        await self._server.stop(self.cfg.grace_s if grace is None else grace)
        self.metrics.stop()
        self._stopped.set()

    async def wait(self) -> None:
        await self._server.wait_for_termination()

    def stop_on_signals(self, *signals: int) -> None:
        """Graceful stop on SIGTERM/SIGINT (call from the running loop)."""
        loop = asyncio.get_running_loop()
        for sig in signals or (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.stop()))
