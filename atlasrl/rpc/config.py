"""Transport settings shared by every server and channel (importable without grpc)."""
from __future__ import annotations

from pydantic import BaseModel, Field

MiB = 1 << 20


class ServerConfig(BaseModel):
    """How a role's gRPC server listens. Every role builds its server from one of these."""

    host: str = "127.0.0.1"
    """Bind address. Loopback by default; see the security section of the README before binding others."""
    port: int = Field(0, ge=0, le=65535)
    """TCP port; 0 picks a free one (tests)."""
    metrics_host: str = "127.0.0.1"
    """Bind address of the Prometheus /metrics endpoint."""
    metrics_port: int | None = Field(None, ge=0, le=65535)
    """Port of /metrics; None disables the endpoint, 0 picks a free one."""
    max_message_bytes: int = Field(64 * MiB, ge=1024, le=1 << 30)
    """Largest message accepted or sent; larger ones fail with RESOURCE_EXHAUSTED."""
    max_concurrent_streams: int = Field(256, ge=1)
    """HTTP/2 streams allowed at once on one client connection."""
    keepalive_time_s: float = Field(30.0, gt=0)
    """Ping idle connections this often; a peer that does not answer is dropped."""
    keepalive_timeout_s: float = Field(10.0, gt=0)
    """How long to wait for a ping answer before dropping the connection."""
    grace_s: float = Field(5.0, ge=0)
    """On shutdown, time given to in-flight RPCs to finish."""


class ChannelConfig(BaseModel):
    """How a client connects to a role."""

    max_message_bytes: int = Field(64 * MiB, ge=1024, le=1 << 30)
    """Largest message accepted or sent."""
    keepalive_time_s: float = Field(30.0, gt=0)
    """Ping the server this often while idle so a dead peer is noticed."""
    keepalive_timeout_s: float = Field(10.0, gt=0)
    """How long to wait for a ping answer."""
