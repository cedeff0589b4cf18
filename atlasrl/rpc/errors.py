"""Typed service errors and their mapping to gRPC status codes.

Domain code raises ``ServiceError`` subclasses (or ``atlasrl.codec.CodecError``);
the server wrapper in ``atlasrl.rpc.handlers`` turns them into a gRPC status
with the error's message, never a traceback. Inside streams the same mapping
fills the per-request ``atlasrl.v1.Status``.
"""
from __future__ import annotations

import grpc

from atlasrl.codec import CodecError
from atlasrl.v1 import common_pb2


class ServiceError(Exception):
    """An error with a gRPC status code and a message meant for the caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, code: grpc.StatusCode | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class MalformedRequest(InvalidArgument):
    """A request's bytes did not parse as the expected message."""


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """(code, message) for an exception raised by domain code."""
    if isinstance(exc, ServiceError):
        return exc.code, exc.message
    if isinstance(exc, CodecError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see server log"


def to_status_msg(exc: BaseException | None = None) -> common_pb2.Status:
    """atlasrl.v1.Status for a per-request result inside a stream or batch."""
    if exc is None:
        return common_pb2.Status(code=0)
    code, message = status_of(exc)
    return common_pb2.Status(code=code.value[0], message=message)


def ok_status() -> common_pb2.Status:
    return common_pb2.Status(code=0)


class RemoteError(Exception):
    """Client side: a per-request Status with a non-OK code (picklable)."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{code_name(code)}: {message}")
        self.code = code
        self.message = message

    def __reduce__(self):
        return (RemoteError, (self.code, self.message))

    @property
    def status_code(self) -> grpc.StatusCode:
        return _CODES.get(self.code, grpc.StatusCode.UNKNOWN)


_CODES = {c.value[0]: c for c in grpc.StatusCode}


def code_name(code: int) -> str:
    """The StatusCode name of a numeric code ("NOT_FOUND"), or the number when it is none."""
    c = _CODES.get(code)
    return c.name if c else str(code)


def raise_for_status(status: common_pb2.Status) -> None:
    if status.code != 0:
        raise RemoteError(status.code, status.message)
