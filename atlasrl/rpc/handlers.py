"""Server-side method handlers built from a service descriptor.

Why not the generated ``add_XServicer_to_server``: with it, a request that does
not parse is rejected by gRPC core with a bare INTERNAL ("Exception
deserializing request!") and a bidi stream dies with it. Here every method
receives raw bytes and parses them itself, so:

- a unary request that does not parse gets INVALID_ARGUMENT naming the message type;
- on a stream, a bad message raises ``MalformedRequest`` from the request
  iterator's ``__anext__`` and the iterator stays usable, so a servicer can
  answer with a per-request error and keep the stream (EnvService.Session does);
- ``ServiceError``/``CodecError`` from domain code become their status code with
  the message; anything else becomes INTERNAL with a short message (the
  traceback goes to the server log, never to the client);
- every RPC is counted in the role's metrics (code, latency, bytes in).

Servicer methods are ``async`` and take parsed messages, exactly like the
generated servicer base classes.
"""
from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError

from atlasrl.metrics import Metrics
from atlasrl.rpc.errors import MalformedRequest, status_of

log = logging.getLogger("atlasrl.rpc")


def _parse(cls, raw: bytes):
    msg = cls()
    try:
        msg.ParseFromString(raw)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise MalformedRequest(f"request is not a valid {cls.DESCRIPTOR.full_name} ({len(raw)} bytes): {e}") from None
    return msg


class ParsedStream:
    """Async iterator over a request stream's parsed messages.

    A message that does not parse raises ``MalformedRequest`` from ``__anext__``;
    the next call continues with the following message.
    """

    def __init__(self, raw_iter: AsyncIterator[bytes], cls, on_message=None):
        self._raw = raw_iter.__aiter__()
        self._cls = cls
        self._on_message = on_message

    def __aiter__(self):
        return self

    async def __anext__(self):
        raw = await self._raw.__anext__()
        if self._on_message:
            self._on_message(len(raw))
        return _parse(self._cls, raw)


class _Call:
    """Book-keeping for one RPC: status code, latency, bytes."""

    def __init__(self, metrics: Metrics | None, service: str, method: str):
        self.metrics, self.service, self.method = metrics, service, method
        self.t0 = time.perf_counter()

    def received(self, nbytes: int) -> None:
        if self.metrics:
            self.metrics.rpc_received_bytes.labels(self.service, self.method).inc(nbytes)
            self.metrics.rpc_messages.labels(self.service, self.method).inc()

    async def fail(self, exc: BaseException, context) -> None:
        code, message = status_of(exc)
        if code == grpc.StatusCode.INTERNAL:
            log.error("unhandled error in %s/%s", self.service, self.method, exc_info=exc)
        await context.abort(code, message)

    def done(self, context, exc: BaseException | None = None) -> None:
        if not self.metrics:
            return
        code = None
        try:
            code = context.code()
        except Exception:  # noqa: BLE001 - older grpc: no code() on aio contexts
            pass
        if code is None:
            code = grpc.StatusCode.OK if exc is None else grpc.StatusCode.UNKNOWN
        if isinstance(exc, grpc.aio.AbortError) and code == grpc.StatusCode.OK:
            code = grpc.StatusCode.UNKNOWN
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        if exc is not None and not isinstance(exc, grpc.aio.AbortError) and name == "OK":
            name = "CANCELLED"
        self.metrics.rpc_requests.labels(self.service, self.method, name).inc()
        self.metrics.rpc_latency.labels(self.service, self.method).observe(time.perf_counter() - self.t0)


def _method_handler(md: MethodDescriptor, impl, metrics: Metrics | None) -> grpc.RpcMethodHandler:
    req_cls = message_factory.GetMessageClass(md.input_type)
    service, method = md.containing_service.full_name, md.name
    serialize = _serialize

    if not md.client_streaming and not md.server_streaming:

        async def unary_unary(raw: bytes, context):
            call = _Call(metrics, service, method)
            exc = None
            try:
                call.received(len(raw))
                return await impl(_parse(req_cls, raw), context)
            except grpc.aio.AbortError as e:
                exc = e
                raise
            except Exception as e:  # noqa: BLE001 - mapped to a status
                exc = e
                await call.fail(e, context)
            finally:
                call.done(context, exc)

        return grpc.unary_unary_rpc_method_handler(unary_unary, request_deserializer=None, response_serializer=serialize)

    if not md.client_streaming and md.server_streaming:

        async def unary_stream(raw: bytes, context):
            call = _Call(metrics, service, method)
            exc = None
            try:
                call.received(len(raw))
                async for resp in impl(_parse(req_cls, raw), context):
                    yield resp
            except grpc.aio.AbortError as e:
                exc = e
                raise
            except Exception as e:  # noqa: BLE001 - mapped to a status
                exc = e
                await call.fail(e, context)
            finally:
                call.done(context, exc)

        return grpc.unary_stream_rpc_method_handler(unary_stream, request_deserializer=None, response_serializer=serialize)

    if md.client_streaming and not md.server_streaming:

        async def stream_unary(raw_iter, context):
            call = _Call(metrics, service, method)
            exc = None
            try:
                return await impl(ParsedStream(raw_iter, req_cls, call.received), context)
            except grpc.aio.AbortError as e:
                exc = e
                raise
            except Exception as e:  # noqa: BLE001 - mapped to a status
                exc = e
                await call.fail(e, context)
            finally:
                call.done(context, exc)

        return grpc.stream_unary_rpc_method_handler(stream_unary, request_deserializer=None, response_serializer=serialize)

    async def stream_stream(raw_iter, context):
        call = _Call(metrics, service, method)
        exc = None
        try:
            async for resp in impl(ParsedStream(raw_iter, req_cls, call.received), context):
                yield resp
        except grpc.aio.AbortError as e:
            exc = e
            raise
        except Exception as e:  # noqa: BLE001 - mapped to a status
            exc = e
            await call.fail(e, context)
        finally:
            call.done(context, exc)

    return grpc.stream_stream_rpc_method_handler(stream_stream, request_deserializer=None, response_serializer=serialize)


def _serialize(msg: Any) -> bytes:
    return msg.SerializeToString()


def service_handler(descriptor: ServiceDescriptor, servicer: Any, metrics: Metrics | None = None) -> grpc.GenericRpcHandler:
    """A generic handler serving every method of ``descriptor`` from ``servicer``."""
    handlers = {}
    for md in descriptor.methods:
        impl = getattr(servicer, md.name, None)
        if impl is None:
            raise TypeError(f"{type(servicer).__name__} does not implement {descriptor.full_name}.{md.name}")
        handlers[md.name] = _method_handler(md, impl, metrics)
    return grpc.method_handlers_generic_handler(descriptor.full_name, handlers)
