"""Transport settings shared by every server and channel (importable without grpc)."""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

MiB = 1 << 20


class SecurityConfig(BaseModel):
    """TLS, mTLS and bearer tokens of one process (its servers and its channels).

    Left unset on a ServerConfig/ChannelConfig, the process default applies
    (``atlasrl.rpc.security.default_security()``: CLI flags or ATLASRL_* env vars);
    with nothing configured, transport is plaintext without tokens (loopback only).
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    tls_cert: Path | None = None
    """PEM certificate: the server's certificate, and the client certificate presented under mTLS."""
    tls_key: Path | None = None
    """PEM private key of ``tls_cert``."""
    tls_ca: Path | None = None
    """PEM CA bundle that peers are verified against (servers by clients; clients by servers under mTLS)."""
    mtls: bool = False
    """Servers require a client certificate signed by ``tls_ca``."""
    token_file: Path | None = None
    """Token file (``role:token`` and ``role:sha256:HEX`` lines); falls back to ATLASRL_TOKEN_FILE, then ATLASRL_TOKENS."""
    client_role: str | None = None
    """Whose plaintext token this process presents as a client (None: the file's only plaintext token)."""
    server_name: str | None = None
    """TLS host name expected in the server certificate, when the target address does not match it."""
    insecure: bool = False
    """Allow binding a non-loopback address without TLS and tokens (logs a loud warning)."""


class ServerConfig(BaseModel):
    """How a role's gRPC server listens. Every role builds its server from one of these."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    host: str = "127.0.0.1"
    """Bind address. Loopback by default; see docs/security.md before binding others."""
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
    """Ping a connection after this long without incoming data; a peer that does not answer is dropped with its streams."""
    keepalive_timeout_s: float = Field(10.0, gt=0)
    """How long to wait for a ping answer before dropping the connection (a frozen peer goes after time + timeout)."""
    grace_s: float = Field(5.0, ge=0)
    """On shutdown, time given to in-flight RPCs to finish."""
    security: SecurityConfig | None = None
    """TLS/mTLS/tokens; None uses the process default (see SecurityConfig)."""
    max_sessions_per_client: int | None = Field(None, ge=1)
    """Live streaming RPCs allowed at once per client (token, certificate or peer address); None = unlimited."""
    session_idle_timeout_s: float | None = Field(None, gt=0)
    """A client stream that sends nothing for this long is ended with DEADLINE_EXCEEDED; None = never."""
    method_roles: dict[str, list[str]] | None = None
    """Extra role scopes (``pkg.Service/Method`` or ``pkg.Service`` -> roles, "*" = any token) over the defaults."""


class ChannelConfig(BaseModel):
    """How a client connects to a role."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    max_message_bytes: int = Field(64 * MiB, ge=1024, le=1 << 30)
    """Largest message accepted or sent."""
    keepalive_time_s: float = Field(30.0, gt=0)
    """Ping the server this often while idle so a dead peer is noticed."""
    keepalive_timeout_s: float = Field(10.0, gt=0)
    """How long to wait for a ping answer."""
    reconnect_max_backoff_s: float = Field(5.0, ge=0.1, le=300)
    """Longest wait between attempts to reconnect to a server that went away (gRPC's own default grows to 120 s):
    a restarted role is found again within about this long."""
    security: SecurityConfig | None = None
    """TLS/mTLS/token of this channel; None uses the process default (see SecurityConfig)."""
