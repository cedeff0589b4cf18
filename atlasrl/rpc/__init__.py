"""Shared gRPC plumbing: every server and channel in atlasrl is made here."""
from atlasrl.rpc.channel import make_channel, wait_ready
from atlasrl.rpc.config import ChannelConfig, ServerConfig
from atlasrl.rpc.errors import (
    FailedPrecondition,
    InvalidArgument,
    MalformedRequest,
    NotFound,
    RemoteError,
    ResourceExhausted,
    ServiceError,
    raise_for_status,
    to_status_msg,
)
from atlasrl.rpc.server import RpcServer

__all__ = [
    "ChannelConfig", "FailedPrecondition", "InvalidArgument", "MalformedRequest", "NotFound", "RemoteError",
    "ResourceExhausted", "RpcServer", "ServerConfig", "ServiceError", "make_channel", "raise_for_status",
    "to_status_msg", "wait_ready",
]
