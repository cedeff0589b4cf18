"""EnvService servicer: the Session stream and ListEnvs (proto/atlasrl/v1/env.proto is the spec).

One stream carries many envs. Requests of a stream are answered one at a time,
in order (a reader task buffers what the client pipelines); the stepping itself
runs in workers, so the event loop keeps serving other streams. Every failure of
one request becomes that response's ``status`` (or a ``StepResult.status``);
the stream ends only when the client ends it, on idle timeout (DEADLINE_EXCEEDED),
or when the shutdown grace runs out. On shutdown a stream first answers the
request in hand, then closes its envs and answers every later request with
UNAVAILABLE (a per-request status: ending the stream while the client writes
would reach the client as grpc-aio's INTERNAL "Internal error from Core").
"""
from __future__ import annotations

import asyncio
import logging
import time

import grpc

from atlasrl.codec import CodecError
from atlasrl.envserver.convert import reset_batch_response, reset_response, step_response
from atlasrl.envserver.sessions import EnvManager
from atlasrl.envserver.sessions import Session as EnvSession  # the Session method shadows the name in the class
from atlasrl.rpc.errors import InvalidArgument, MalformedRequest, NotFound, ServiceError, status_of, to_status_msg
from atlasrl.v1 import common_pb2, env_pb2

log = logging.getLogger("atlasrl.envserver")

_EOF = object()
_DRAIN = object()
INBOX = 64  # requests buffered per stream beyond the one being answered
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]


class EnvServicer:
    def __init__(self, manager: EnvManager, idle_timeout_s: float | None = None):
        self.manager = manager
        self.idle_timeout_s = idle_timeout_s
        self._inboxes: set[asyncio.Queue] = set()

    @property
    def open_streams(self) -> int:
        return len(self._inboxes)

    def drain(self) -> None:
        """Shutdown: each stream finishes the request in hand, closes its envs and answers later requests with UNAVAILABLE."""
        for inbox in self._inboxes:
            try:
                inbox.put_nowait(_DRAIN)
            except asyncio.QueueFull:
                pass  # the stream is busy; it checks manager.draining after each request

    async def ListEnvs(self, request, context):
        resp = env_pb2.ListEnvsResponse()
        for spec in await self.manager.default_specs():
            resp.envs.add().MergeFromString(spec)
        return resp

    async def Session(self, requests, context):
        session = self.manager.new_session("envservice")
        inbox: asyncio.Queue = asyncio.Queue(INBOX)
        self._inboxes.add(inbox)
        pump = asyncio.ensure_future(_pump(requests, inbox))
        try:
            while True:
                draining = self.manager.draining.is_set()
                try:
                    item = await asyncio.wait_for(inbox.get(), None if draining else self.idle_timeout_s)
                except TimeoutError:
                    n = len(session.envs)
                    await self.manager.end_session(session)
                    await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                        f"session idle for more than {self.idle_timeout_s:g} s (idle timeout); its {n} envs were closed")
                if item is _EOF:
                    return
                if item is not _DRAIN and isinstance(item, BaseException) and not isinstance(item, MalformedRequest):
                    raise item
                if item is _DRAIN or self.manager.draining.is_set():
                    # Shutdown: the request in hand was answered; free the envs now and answer what
                    # follows with UNAVAILABLE until the client ends the stream (or the grace ends).
                    await self.manager.end_session(session)
                    if item is not _DRAIN:
                        self.manager.metrics.error("drain", _UNAVAILABLE)
                        yield env_pb2.EnvResponse(request_id=getattr(item, "request_id", 0), status=common_pb2.Status(
                            code=_UNAVAILABLE, message="env server is shutting down: this stream's envs were closed; open them on another server"))
                    continue
                if isinstance(item, MalformedRequest):
                    self.manager.metrics.error("malformed", grpc.StatusCode.INVALID_ARGUMENT.value[0])
                    yield env_pb2.EnvResponse(status=to_status_msg(item))
                    continue
                yield await self._answer(session, item)
        finally:
            self._inboxes.discard(inbox)
            pump.cancel()
            try:
                await asyncio.shield(self.manager.end_session(session))
            except asyncio.CancelledError:
                pass

    async def _answer(self, session: EnvSession, req: env_pb2.EnvRequest):
        kind = req.WhichOneof("payload") or "none"
        t0 = time.perf_counter()
        try:
            if kind == "step":
                resp = await self._step(session, req)
            elif kind == "reset":
                resp = await self._reset(session, req)
            elif kind == "reset_batch":
                resp = await self._reset_batch(session, req)
            elif kind == "open":
                resp = await self._open(session, req)
            elif kind == "close":
                resp = await self._close(session, req)
            else:
                raise InvalidArgument(f"request {req.request_id} has no payload: set one of open, reset, reset_batch, step, close")
        except (ServiceError, CodecError) as e:
            code, _ = status_of(e)
            self.manager.metrics.error(kind, code.value[0])
            resp = env_pb2.EnvResponse(request_id=req.request_id, status=to_status_msg(e))
        except Exception as e:  # one bad request never ends the stream
            log.exception("%s request %d failed", kind, req.request_id)
            self.manager.metrics.error(kind, grpc.StatusCode.INTERNAL.value[0])
            resp = env_pb2.EnvResponse(request_id=req.request_id, status=to_status_msg(e))
        self.manager.metrics.latency(kind).observe(time.perf_counter() - t0)
        return resp

    async def _open(self, session: EnvSession, req: env_pb2.EnvRequest):
        o = req.open
        seed = o.seed if o.HasField("seed") else None
        handle, spec = await self.manager.open(session, o.env_id, dict(o.config), seed)
        resp = env_pb2.EnvResponse(request_id=req.request_id, open=env_pb2.OpenResponse(handle=handle))
        resp.open.spec.MergeFromString(spec)
        return resp

    async def _reset(self, session: EnvSession, req: env_pb2.EnvRequest):
        r = req.reset
        outcome = await self.manager.reset(session, r.handle, r.seed if r.HasField("seed") else None)
        if outcome.code:
            return env_pb2.EnvResponse(request_id=req.request_id, status=common_pb2.Status(code=outcome.code, message=outcome.message))
        return reset_response(req.request_id, outcome.observation)

    async def _reset_batch(self, session: EnvSession, req: env_pb2.EnvRequest):
        resets = [(r.handle, r.seed if r.HasField("seed") else None) for r in req.reset_batch.resets]
        outcomes = await self.manager.reset_many(session, resets)
        return reset_batch_response(req.request_id, ((h, o.code, o.message, o.observation) for (h, _), o in zip(resets, outcomes)))

    async def _step(self, session: EnvSession, req: env_pb2.EnvRequest):
        actions = [(a.handle, a.values if a.HasField("values") else a.text) for a in req.step.actions]
        for a in req.step.actions:
            if a.text and a.HasField("values"):
                raise InvalidArgument(f"step.actions[].values: the action for env handle {a.handle} sets both text and values; set one")
        outcomes = await self.manager.step(session, actions, req.step.strict, req.step.auto_reset)
        return step_response(req.request_id, ((h, o.code, o.message, o.observation, o.restarted) for (h, _), o in zip(actions, outcomes)))

    async def _close(self, session: EnvSession, req: env_pb2.EnvRequest):
        closed, unknown = await self.manager.close(session, list(req.close.handles))
        resp = env_pb2.EnvResponse(request_id=req.request_id, close=env_pb2.CloseResponse(closed=closed))
        if unknown:
            err = NotFound(f"env handles {', '.join(map(str, unknown))} are not open on this stream; closed {closed} others")
            self.manager.metrics.error("close", err.code.value[0])
            resp.status.CopyFrom(to_status_msg(err))
        return resp


async def _pump(requests, inbox: asyncio.Queue) -> None:
    """Read the client's (possibly pipelined) requests into the inbox; bad bytes become MalformedRequest items."""
    while True:
        try:
            req = await requests.__anext__()
        except StopAsyncIteration:
            await inbox.put(_EOF)
            return
        except MalformedRequest as e:
            await inbox.put(e)
            continue
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - transport failure: hand it to the answering loop
            await inbox.put(e)
            return
        await inbox.put(req)
