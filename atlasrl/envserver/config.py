"""Configuration of the env server role (importable without grpc, gymnasium or torch)."""
from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from atlasrl.rpc.config import MiB, ServerConfig


def default_workers() -> int:
    """One core stays with the gRPC event loop; the rest step envs."""
    return max(1, (os.cpu_count() or 2) - 1)


class EnvServerConfig(BaseModel):
    """How one env server listens, which envs it hosts and where they run."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    host: str = "127.0.0.1"
    """gRPC bind address (loopback by default)."""
    port: int = Field(50051, ge=0, le=65535)
    """gRPC port; 0 picks a free one."""
    metrics_port: int | None = Field(None, ge=0, le=65535)
    """Prometheus /metrics port; None disables it, 0 picks a free one."""
    envs: list[str] = Field(default_factory=list)
    """Env ids (``frozenlake``) or id prefixes (``maniskill``) that may be opened; empty = every registered env."""
    max_envs: int = Field(512, ge=1, le=1_000_000)
    """Live env instances allowed across all streams; Open beyond it gets RESOURCE_EXHAUSTED."""
    workers: int | None = Field(None, ge=0, le=256)
    """Worker processes stepping envs; 0 runs envs in this process on a thread pool (right for grid envs). None = one
    per ``devices`` entry, else CPU cores - 1 (one core stays with the gRPC event loop)."""
    devices: list[str] = Field(default_factory=list)
    """GPU ids; worker i gets CUDA_VISIBLE_DEVICES=devices[i % len(devices)] before any import."""
    threads: int = Field(4, ge=1, le=256)
    """Thread-pool size when workers == 0 (envs of different streams step concurrently)."""
    frame_cache_mb: float = Field(32.0, ge=0, le=65536)
    """Megabytes of encoded frames each env host (worker) keeps by content, so a frame seen before skips zstd (grid
    games name a frame by its tile codes; a 128 px grid frame is ~4 KB); 0 = off."""
    idle_timeout_s: float | None = Field(None, gt=0)
    """A stream (gRPC, or an OpenEnv WebSocket) with no request for this long is ended and its envs freed; None = never."""
    max_sessions_per_client: int | None = Field(None, ge=1)
    """Live streams one client may hold (``ServerConfig.max_sessions_per_client``); None = unlimited."""
    session_idle_timeout_s: float | None = Field(None, gt=0)
    """Any client stream silent this long ends with DEADLINE_EXCEEDED (``ServerConfig.session_idle_timeout_s``); None = never."""
    max_message_bytes: int = Field(64 * MiB, ge=1024, le=1 << 30)
    """Largest gRPC message accepted or sent; larger ones fail with RESOURCE_EXHAUSTED."""
    grace_s: float = Field(5.0, ge=0)
    """On SIGTERM: time in-flight requests get to finish before streams are cut."""
    coordinator: str | None = None
    """Coordinator address (HOST:PORT) to register with; None = standalone."""
    openenv_port: int | None = Field(None, ge=0, le=65535)
    """Also serve the envs over OpenEnv (HTTP/WebSocket, needs the ``openenv`` extra) on this port of ``host``; None = off, 0 = any free port."""
    openenv_env: str | None = None
    """Env id an OpenEnv ``reset()`` without ``env_id`` opens; None = the first ``envs`` entry (or the first registered id)."""

    @field_validator("envs", "devices", mode="before")
    @classmethod
    def _split_csv(cls, v):
        if isinstance(v, str):
            v = v.split(",")
        return [s.strip() for s in (v or []) if s and s.strip()]

    @model_validator(mode="after")
    def _devices_need_workers(self):
        if self.devices and self.workers is not None and self.workers < len(self.devices):
            raise ValueError(f"workers ({self.workers}) is fewer than the {len(self.devices)} devices; give one worker per "
                             "device at least")
        return self

    def worker_count(self) -> int:
        """``workers`` resolved: None = one per device, else CPU cores - 1."""
        if self.workers is not None:
            return self.workers
        return len(self.devices) if self.devices else default_workers()

    def server_config(self) -> ServerConfig:
        return ServerConfig(
            host=self.host,
            port=self.port,
            metrics_port=self.metrics_port,
            max_message_bytes=self.max_message_bytes,
            grace_s=self.grace_s,
            max_sessions_per_client=self.max_sessions_per_client,
            session_idle_timeout_s=self.session_idle_timeout_s,
        )

    def allows(self, env_id: str) -> bool:
        """Whether ``env_id`` may be opened: listed exactly, or its prefix before ':' is listed."""
        if not self.envs:
            return True
        return env_id in self.envs or (":" in env_id and env_id.split(":", 1)[0] in self.envs)
