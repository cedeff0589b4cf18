"""The one way atlasrl opens a gRPC channel to another role.

    channel = make_channel("127.0.0.1:50051")               # grpc.aio.Channel
    channel = make_channel("127.0.0.1:50051", aio=False)    # grpc.Channel (threads, scripts)

Explicit message-size limits and keepalive match the server side. TLS (when a
CA is configured), the client certificate (mTLS) and the bearer token come from
``cfg.security`` or the process default (``atlasrl.rpc.security``). A client
stream the server ends early reports the server's status, not grpcio's INTERNAL
(``atlasrl.rpc.grpc_compat``).
"""
from __future__ import annotations

import grpc

from atlasrl.rpc import grpc_compat
from atlasrl.rpc.config import ChannelConfig
from atlasrl.rpc.options import channel_options
from atlasrl.rpc.security import channel_credentials, default_security, load_tokens


def make_channel(target: str, cfg: ChannelConfig | None = None, *, aio: bool = True):
    cfg = cfg or ChannelConfig()
    sec = cfg.security or default_security()
    opts = channel_options(cfg)
    if sec.server_name:
        opts.append(("grpc.ssl_target_name_override", sec.server_name))
    creds = channel_credentials(sec)
    token = load_tokens(sec).client_token(sec.client_role)
    if aio:
        grpc_compat.install_all()
        from atlasrl.rpc.auth import aio_token_interceptors

        interceptors = aio_token_interceptors(token) if token else None
        if creds is not None:
            return grpc.aio.secure_channel(target, creds, options=opts, interceptors=interceptors)
        return grpc.aio.insecure_channel(target, options=opts, interceptors=interceptors)
    channel = grpc.secure_channel(target, creds, options=opts) if creds is not None else grpc.insecure_channel(target, options=opts)
    if token:
        from atlasrl.rpc.auth import sync_token_interceptor

        channel = grpc.intercept_channel(channel, sync_token_interceptor(token))
    return channel


def wait_ready(channel: grpc.Channel, timeout: float = 10.0) -> None:
    """Block until a sync channel is connected (raises grpc.FutureTimeoutError)."""
    grpc.channel_ready_future(channel).result(timeout=timeout)
