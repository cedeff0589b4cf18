"""EnvClient: the one client of the env server's ``EnvService.Session`` stream.

    async with EnvClient("127.0.0.1:50051") as envs:
        handle, spec = await envs.open("frozenlake", {"size": "4"}, seed=3)
        obs = await envs.reset(handle, seed=3)           # EnvObservation: images (numpy), text, reward, ...
        firsts = await envs.reset_many([(handle, 4)])   # several resets in one message: StepResults
        results = await envs.step({handle: "Right, Down"})
        r = results[0]                                   # StepResult: .observation or .error
        obs = r.unwrap()                                 # raises RemoteError if this action failed
        await envs.close([handle])

The actor's rollout loop, the tests (the compliance suite included), the
benches and ``atlasrl debug env`` all use this class.

Concurrency: any number of coroutines may call the client at once; each call
writes its request immediately (pipelining) and awaits its own response. The
server answers in order, so the client matches responses to a FIFO of pending
futures and checks the echoed ``request_id``. Batch many envs into one ``step``
for throughput; keep several steps in flight to hide the round trip.

Errors: a failed request raises ``RemoteError`` (code + message from the server);
a failed action inside a batch is returned as ``StepResult.error`` so the other
envs' results are kept. When the stream breaks (server gone, idle timeout,
shutdown, a request unanswered for ``request_timeout_s``, a response that breaks
the protocol) every pending and later call raises ``EnvStreamClosed`` with the
status that ended it, and ``down`` is true.

Reconnecting: ``reconnect()`` waits up to ``connect_timeout_s`` for the server
to answer (else raises ``EnvStreamClosed`` UNAVAILABLE) and opens a fresh
stream on a fresh channel. The server closed the old stream's envs with it, so
the caller reopens its sessions (the actor moves them to another server while
this one stays unreachable).

Images: with ``decode_images=True`` (the default) each observation's images are
decoded on arrival, through the codec's guards (a lying tensor raises
``atlasrl.codec.CodecError`` there). With ``decode_images=False`` (the actor,
which forwards the encoded frames into prompts and episodes) nothing is decoded
unless ``.images`` is read; ``.proto`` is the observation as received.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from atlasrl import codec
from atlasrl.rpc import ChannelConfig, RemoteError, make_channel, raise_for_status
from atlasrl.v1 import env_pb2, env_pb2_grpc

log = logging.getLogger("atlasrl.clients.env")

_CANCELLED = grpc.StatusCode.CANCELLED.value[0]
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]
_INTERNAL = grpc.StatusCode.INTERNAL.value[0]
_DEADLINE = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]


class EnvStreamClosed(RemoteError):
    """The Session stream ended; no request on it can be answered any more (its env handles are gone)."""


class EnvObservation:
    """An ``atlasrl.v1.Observation`` as received (``proto``), with Python views of its fields.

    Scalars read through to the proto; ``images`` (decoded numpy arrays, uint8 (H, W, 3),
    ``images[0]`` the primary camera) and ``info`` (a dict) are converted on first use and kept.
    """

    __slots__ = ("_images", "_info", "proto")

    def __init__(self, proto: env_pb2.Observation):
        self.proto = proto
        self._images: list[np.ndarray] | None = None
        self._info: dict[str, Any] | None = None

    @classmethod
    def from_proto(cls, obs: env_pb2.Observation, decode_images: bool = True) -> EnvObservation:
        """Wrap; with ``decode_images`` decode the images now (a lying tensor raises ``atlasrl.codec.CodecError``)."""
        o = cls(obs)
        if decode_images:
            o._images = [codec.decode(t) for t in obs.images]
        return o

    @property
    def images(self) -> list[np.ndarray]:
        if self._images is None:
            self._images = [codec.decode(t) for t in self.proto.images]
        return self._images

    @property
    def info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = json_format.MessageToDict(self.proto.info)
        return self._info

    @property
    def text(self) -> str:
        return self.proto.text

    @property
    def reward(self) -> float:
        return self.proto.reward

    @property
    def terminated(self) -> bool:
        return self.proto.terminated

    @property
    def truncated(self) -> bool:
        return self.proto.truncated

    @property
    def success(self) -> bool:
        return self.proto.success

    @property
    def done(self) -> bool:
        return self.proto.terminated or self.proto.truncated

    @property
    def agent(self) -> tuple[int, int]:
        return (self.proto.agent.row, self.proto.agent.col)

    @property
    def entities(self) -> list[env_pb2.Entity]:
        return list(self.proto.entities)

    @property
    def step(self) -> int:
        return self.proto.step

    @property
    def layout_key(self) -> str:
        return self.proto.layout_key

    def __repr__(self) -> str:
        return (f"EnvObservation(step={self.step}, reward={self.reward}, terminated={self.terminated}, "
                f"truncated={self.truncated}, success={self.success}, agent={self.agent}, "
                f"images={len(self.proto.images)}, text={self.text!r})")


@dataclass(slots=True)
class StepResult:
    handle: int
    observation: EnvObservation | None = None
    error: RemoteError | None = None
    # With step(auto_reset=True), when this action ended its episode: the next episode's first observation
    # (None when the automatic reset failed: send reset() to get its error).
    reset_observation: EnvObservation | None = None

    def unwrap(self) -> EnvObservation:
        if self.error is not None:
            raise self.error
        return self.observation  # type: ignore[return-value]


class _Stream:
    """One Session call: its FIFO of pending requests, its reader, and the error that ended it."""

    def __init__(self, call, target: str):
        self.call = call
        self.target = target
        self.pending: deque[tuple[int, asyncio.Future]] = deque()
        self.closed: EnvStreamClosed | None = None
        self.half_closed = False  # the client ended its side: the server ending the stream is expected
        self.reader = asyncio.ensure_future(self._read_loop())

    async def _read_loop(self) -> None:
        try:
            while True:
                resp = await self.call.read()
                if resp is grpc.aio.EOF:
                    if self.half_closed:
                        self.fail(EnvStreamClosed(_CANCELLED, "client closed the stream"))
                    else:
                        self.fail(EnvStreamClosed(_UNAVAILABLE, "server ended the stream"))
                    return
                if not self.pending:
                    self.fail(EnvStreamClosed(_INTERNAL, f"unexpected response {resp.request_id}"))
                    return
                rid, fut = self.pending[0]
                if resp.request_id != rid:
                    self.fail(EnvStreamClosed(_INTERNAL, f"response {resp.request_id} arrived while waiting for {rid}"))
                    return
                self.pending.popleft()
                if not fut.done():  # a caller that timed out or was cancelled left its future done
                    fut.set_result(resp)
        except grpc.aio.AioRpcError as e:
            self.fail(EnvStreamClosed(e.code().value[0], e.details() or e.code().name))
        except asyncio.CancelledError:  # this task cancelled, or the read of a call that fail() cancelled
            self.fail(EnvStreamClosed(_CANCELLED, "client closed the stream"))
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        except Exception as e:  # noqa: BLE001 - any read failure means the stream is gone
            self.fail(EnvStreamClosed(_INTERNAL, f"{type(e).__name__}: {e}"))

    def fail(self, err: EnvStreamClosed) -> EnvStreamClosed:
        """End the stream (first error wins) and fail every pending request with it; returns the error that won."""
        if self.closed is None:
            self.closed = err
            if err.code != _CANCELLED:
                log.warning("env server %s stream failed: %s", self.target, err)
            self.call.cancel()
        while self.pending:
            _, fut = self.pending.popleft()
            if not fut.done():
                fut.set_exception(self.closed)
        return self.closed


class EnvClient:
    def __init__(self, target: str, *, channel_config: ChannelConfig | None = None, decode_images: bool = True,
                 request_timeout_s: float | None = 120.0, connect_timeout_s: float = 2.0):
        self.target = target
        self.decode_images = decode_images
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._channel_config = channel_config
        self._channel = None
        self._stream: _Stream | None = None
        self._ids = itertools.count(1)
        self._write_lock = asyncio.Lock()  # grpc.aio allows one write in flight per stream; write order == FIFO order

    async def __aenter__(self) -> EnvClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    @property
    def down(self) -> bool:
        """No usable stream: never connected, or the stream ended (``reconnect()`` opens a fresh one)."""
        return self._stream is None or self._stream.closed is not None

    async def connect(self, wait_ready: bool = False) -> None:
        """Open a channel and a Session stream, replacing any previous one (whose handles are gone).

        With ``wait_ready``, first wait up to ``connect_timeout_s`` for the server to answer; raises
        ``EnvStreamClosed`` (UNAVAILABLE) if it does not. Without, an unreachable server shows as the
        first request failing with ``EnvStreamClosed``.
        """
        await self._discard(EnvStreamClosed(_CANCELLED, "client reconnected"))
        self._channel = channel = make_channel(self.target, self._channel_config)
        if wait_ready:
            try:
                await asyncio.wait_for(channel.channel_ready(), self.connect_timeout_s)
            except (TimeoutError, grpc.aio.AioRpcError) as e:
                await self._discard(None)
                raise EnvStreamClosed(_UNAVAILABLE, f"env server {self.target} is unreachable "
                                      f"({type(e).__name__} within {self.connect_timeout_s:g} s)") from None
        self._stream = _Stream(env_pb2_grpc.EnvServiceStub(channel).Session(), self.target)

    async def reconnect(self) -> None:
        """A fresh stream after the old one broke (server died or restarted); raises EnvStreamClosed if unreachable."""
        await self.connect(wait_ready=True)

    async def aclose(self) -> None:
        """End the stream (the server closes this stream's envs) and the channel."""
        s = self._stream
        if s is not None:
            if s.closed is None:
                s.half_closed = True
                try:
                    await s.call.done_writing()
                except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError, RuntimeError):
                    pass
            await asyncio.wait({s.reader}, timeout=5.0)  # the server closes the stream's envs, then ends it
        await self._discard(EnvStreamClosed(_CANCELLED, "client closed the stream"), keep_stream=True)

    # --- API ----------------------------------------------------------------------------
    async def list_envs(self) -> list[env_pb2.EnvSpec]:
        if self._channel is None:
            await self.connect()
        resp = await env_pb2_grpc.EnvServiceStub(self._channel).ListEnvs(env_pb2.ListEnvsRequest())
        return list(resp.envs)

    async def open(self, env_id: str, config: Mapping[str, Any] | None = None, seed: int | None = None) -> tuple[int, env_pb2.EnvSpec]:
        req = env_pb2.OpenRequest(env_id=env_id, config={str(k): _str(v) for k, v in (config or {}).items()})
        if seed is not None:
            req.seed = seed
        resp = await self.request(env_pb2.EnvRequest(open=req))
        return resp.open.handle, resp.open.spec

    async def reset(self, handle: int, seed: int | None = None) -> EnvObservation:
        req = env_pb2.ResetRequest(handle=handle)
        if seed is not None:
            req.seed = seed
        resp = await self.request(env_pb2.EnvRequest(reset=req))
        return EnvObservation.from_proto(resp.reset.observation, self.decode_images)

    async def reset_many(self, resets: Iterable[tuple[int, int | None]]) -> list[StepResult]:
        """Reset several envs in one message, each (handle, seed) on its own: one result per entry, in order,
        with its first observation or its error (``StepResult.error``). One message instead of one Reset each
        saves the stream's per-message machinery (~0.4 ms a message on loopback)."""
        req = env_pb2.ResetBatchRequest()
        for handle, seed in resets:
            r = req.resets.add(handle=handle)
            if seed is not None:
                r.seed = seed
        n = len(req.resets)
        stream, resp = await self._roundtrip(env_pb2.EnvRequest(reset_batch=req))
        results = resp.reset_batch.results
        if len(results) != n:  # which envs were reset is unknown: the stream's sessions are lost
            raise stream.fail(EnvStreamClosed(_INTERNAL, f"env server {self.target} answered {len(results)} of {n} resets"))
        decode = self.decode_images
        return [StepResult(r.handle, error=RemoteError(r.status.code, r.status.message)) if r.status.code
                else StepResult(r.handle, EnvObservation.from_proto(r.observation, decode)) for r in results]

    async def step(self, actions: Mapping[int, str | np.ndarray] | Iterable[tuple[int, str | np.ndarray]],
                   strict: bool = False, auto_reset: bool = False) -> list[StepResult]:
        """One result per action, in order. Errors of single actions are in ``StepResult.error``.

        An action is text, or a numeric array (float32/float64, (action_dim,) or (n, action_dim)) for envs
        whose spec has ``numeric_actions`` (sent as ``Action.values``). ``auto_reset``: an env whose episode
        ends starts the next one at once (its RNG goes on), in ``StepResult.reset_observation``."""
        pairs = list(actions.items()) if isinstance(actions, Mapping) else list(actions)
        req = env_pb2.StepRequest(actions=[_action(h, a) for h, a in pairs], strict=strict, auto_reset=auto_reset)
        stream, resp = await self._roundtrip(env_pb2.EnvRequest(step=req))
        results = resp.step.results
        if len(results) != len(pairs):  # which actions were applied is unknown: the stream's sessions are lost
            raise stream.fail(EnvStreamClosed(_INTERNAL, f"env server {self.target} answered {len(results)} of "
                                              f"{len(pairs)} actions"))
        decode = self.decode_images
        out = []
        for r in results:
            if r.status.code:
                out.append(StepResult(r.handle, error=RemoteError(r.status.code, r.status.message)))
            else:
                reset = EnvObservation.from_proto(r.reset_observation, decode) if r.HasField("reset_observation") else None
                out.append(StepResult(r.handle, EnvObservation.from_proto(r.observation, decode), reset_observation=reset))
        return out

    async def step_one(self, handle: int, text: str, strict: bool = False) -> EnvObservation:
        return (await self.step([(handle, text)], strict))[0].unwrap()

    async def close(self, handles: Iterable[int]) -> int:
        """Close these envs on the server (the stream stays open); ``aclose()`` ends the client."""
        resp = await self.request(env_pb2.EnvRequest(close=env_pb2.CloseRequest(handles=list(handles))))
        return resp.close.closed

    async def request(self, req: env_pb2.EnvRequest) -> env_pb2.EnvResponse:
        """Send one request (its request_id is assigned here) and await its response; raises RemoteError."""
        return (await self._roundtrip(req))[1]

    # --- internals ----------------------------------------------------------------------
    async def _roundtrip(self, req: env_pb2.EnvRequest) -> tuple[_Stream, env_pb2.EnvResponse]:
        if self._stream is None:
            await self.connect()
        s = self._stream
        assert s is not None, "connect() opens a stream or raises"
        fut = asyncio.get_running_loop().create_future()
        async with self._write_lock:
            if s.closed is not None:
                raise s.closed
            req.request_id = rid = next(self._ids)
            s.pending.append((rid, fut))
            try:
                await s.call.write(req)
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
                pass  # the reader sees the stream end and fails the future with its status
        if self.request_timeout_s is None:
            resp = await fut
        else:
            try:
                async with asyncio.timeout(self.request_timeout_s):
                    resp = await fut
            except TimeoutError:
                # Responses come in order: one that never comes blocks every later one, so the stream is lost.
                raise s.fail(EnvStreamClosed(_DEADLINE, f"env server {self.target} did not answer request {rid} "
                                             f"within {self.request_timeout_s:g} s")) from None
        raise_for_status(resp.status)
        return s, resp

    async def _discard(self, err: EnvStreamClosed | None, keep_stream: bool = False) -> None:
        """Fail and drop the current stream and channel."""
        s = self._stream
        if s is not None:
            if err is not None:
                s.fail(err)
            if not s.reader.done():
                s.reader.cancel()
                try:
                    await s.reader
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
            if not keep_stream:
                self._stream = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


def _action(handle: int, action: str | np.ndarray) -> env_pb2.Action:
    if isinstance(action, str):
        return env_pb2.Action(handle=handle, text=action)
    return env_pb2.Action(handle=handle, values=codec.encode(action, compress=False))


def _str(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)
