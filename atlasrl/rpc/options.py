"""gRPC channel arguments derived from ServerConfig / ChannelConfig.

Keepalive: gRPC core waits for a keepalive PING's ack for ``grpc.http2.ping_timeout_ms`` (default 60 s),
not ``grpc.keepalive_timeout_ms``, so both are set from ``keepalive_timeout_s``: a frozen peer (SIGSTOPped:
its kernel still ACKs TCP, only the process can ack a PING) is dropped after keepalive time + timeout
(tests/test_rpc_keepalive.py).
"""
from __future__ import annotations

from atlasrl.rpc.config import ChannelConfig, ServerConfig

PING_TIMEOUT_MS = "grpc.http2.ping_timeout_ms"  # GRPC_ARG_PING_TIMEOUT_MS: core-internal, not in the public headers


def server_options(cfg: ServerConfig) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", cfg.max_message_bytes),
        ("grpc.max_receive_message_length", cfg.max_message_bytes),
        ("grpc.max_concurrent_streams", cfg.max_concurrent_streams),
        ("grpc.keepalive_time_ms", int(cfg.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(cfg.keepalive_timeout_s * 1000)),
        (PING_TIMEOUT_MS, int(cfg.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        # Let clients ping as often as our own clients do (see channel_options).
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.http2.max_pings_without_data", 0),
        # Two servers must never share a port silently.
        ("grpc.so_reuseport", 0),
    ]


def channel_options(cfg: ChannelConfig) -> list[tuple[str, int | str]]:
    return [
        ("grpc.max_send_message_length", cfg.max_message_bytes),
        ("grpc.max_receive_message_length", cfg.max_message_bytes),
        ("grpc.keepalive_time_ms", max(5000, int(cfg.keepalive_time_s * 1000))),
        ("grpc.keepalive_timeout_ms", int(cfg.keepalive_timeout_s * 1000)),
        (PING_TIMEOUT_MS, int(cfg.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.enable_retries", 1),
        ("grpc.initial_reconnect_backoff_ms", min(1000, int(cfg.reconnect_max_backoff_s * 1000))),
        ("grpc.min_reconnect_backoff_ms", min(1000, int(cfg.reconnect_max_backoff_s * 1000))),
        ("grpc.max_reconnect_backoff_ms", int(cfg.reconnect_max_backoff_s * 1000)),
    ]
