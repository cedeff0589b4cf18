"""The one way atlasrl opens a gRPC channel to another role.

    channel = make_channel("127.0.0.1:50051")               # grpc.aio.Channel
    channel = make_channel("127.0.0.1:50051", aio=False)    # grpc.Channel (threads, scripts)

Explicit message-size limits and keepalive match the server side.
"""
from __future__ import annotations

import grpc

from atlasrl.rpc.config import ChannelConfig
from atlasrl.rpc.options import channel_options


def make_channel(target: str, cfg: ChannelConfig | None = None, *, aio: bool = True):
    cfg = cfg or ChannelConfig()
    opts = channel_options(cfg)
    if aio:
        return grpc.aio.insecure_channel(target, options=opts)
    return grpc.insecure_channel(target, options=opts)


def wait_ready(channel: grpc.Channel, timeout: float = 10.0) -> None:
    """Block until a sync channel is connected (raises grpc.FutureTimeoutError)."""
    grpc.channel_ready_future(channel).result(timeout=timeout)
