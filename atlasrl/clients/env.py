"""EnvClient: drive many envs of one env server over a single pipelined Session stream.

    async with EnvClient("127.0.0.1:50051") as envs:
        handle, spec = await envs.open("frozenlake", {"size": "4"}, seed=3)
        obs = await envs.reset(handle, seed=3)           # EnvObservation: images (numpy), text, reward, ...
        results = await envs.step({handle: "Right, Down"})
        r = results[0]                                   # StepResult: .observation or .error
        obs = r.unwrap()                                 # raises RemoteError if this action failed
        await envs.close([handle])

Concurrency: any number of coroutines may call the client at once; each call
writes its request immediately (pipelining) and awaits its own response. The
server answers in order, so the client matches responses to a FIFO of pending
futures and checks the echoed ``request_id``. Batch many envs into one ``step``
for throughput; keep several steps in flight to hide the round trip.

Errors: a failed request raises ``RemoteError`` (code + message from the server);
a failed action inside a batch is returned as ``StepResult.error`` so the other
envs' results are kept. When the stream breaks (server gone, idle timeout,
shutdown) every pending and later call raises ``EnvStreamClosed`` with the gRPC
status that ended it.
"""
from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from atlasrl import codec
from atlasrl.rpc import ChannelConfig, RemoteError, make_channel, raise_for_status
from atlasrl.v1 import env_pb2, env_pb2_grpc


class EnvStreamClosed(RemoteError):
    """The Session stream ended; no request on it can be answered any more."""


@dataclass
class EnvObservation:
    """A decoded ``atlasrl.v1.Observation``."""

    images: list[np.ndarray]           # uint8 (H, W, 3); images[0] is the primary camera
    text: str
    reward: float
    terminated: bool
    truncated: bool
    success: bool
    info: dict[str, Any]
    agent: tuple[int, int]
    entities: list[env_pb2.Entity]
    step: int
    layout_key: str
    proto: env_pb2.Observation = field(repr=False)  # as received (forward images without re-encoding)

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    @classmethod
    def from_proto(cls, obs: env_pb2.Observation, decode_images: bool = True) -> EnvObservation:
        """Decode (images through the codec's guards: a lying tensor raises ``atlasrl.codec.CodecError``)."""
        return cls(
            images=[codec.decode(t) for t in obs.images] if decode_images else [],
            text=obs.text,
            reward=obs.reward,
            terminated=obs.terminated,
            truncated=obs.truncated,
            success=obs.success,
            info=json_format.MessageToDict(obs.info),
            agent=(obs.agent.row, obs.agent.col),
            entities=list(obs.entities),
            step=obs.step,
            layout_key=obs.layout_key,
            proto=obs,
        )


@dataclass
class StepResult:
    handle: int
    observation: EnvObservation | None = None
    error: RemoteError | None = None

    def unwrap(self) -> EnvObservation:
        if self.error is not None:
            raise self.error
        return self.observation  # type: ignore[return-value]


class EnvClient:
    def __init__(self, target: str, *, channel_config: ChannelConfig | None = None, decode_images: bool = True):
        self.target = target
        self.decode_images = decode_images
        self._channel_config = channel_config
        self._channel = None
        self._call: grpc.aio.StreamStreamCall | None = None
        self._ids = itertools.count(1)
        self._pending: deque[tuple[int, asyncio.Future]] = deque()
        self._write_lock = asyncio.Lock()
        self._reader: asyncio.Task | None = None
        self._closed: EnvStreamClosed | None = None

    async def __aenter__(self) -> EnvClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Open the channel and the Session stream."""
        self._channel = make_channel(self.target, self._channel_config)
        self._call = env_pb2_grpc.EnvServiceStub(self._channel).Session()
        self._reader = asyncio.ensure_future(self._read_loop())

    async def aclose(self) -> None:
        """End the stream (the server closes this stream's envs) and the channel."""
        if self._call is not None and self._closed is None:
            try:
                await self._call.done_writing()
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, RuntimeError):
                pass
        if self._reader is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._reader), 5.0)
            except (TimeoutError, Exception):  # noqa: BLE001 - closing: a reader that does not end cleanly is cancelled
                self._reader.cancel()
        self._fail_all(EnvStreamClosed(grpc.StatusCode.CANCELLED.value[0], "client closed the stream"))
        if self._channel is not None:
            await self._channel.close()

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

    async def step(self, actions: Mapping[int, str] | Iterable[tuple[int, str]], strict: bool = False) -> list[StepResult]:
        """One result per action, in order. Errors of single actions are in ``StepResult.error``."""
        pairs = list(actions.items()) if isinstance(actions, Mapping) else list(actions)
        req = env_pb2.StepRequest(actions=[env_pb2.Action(handle=h, text=t) for h, t in pairs], strict=strict)
        resp = await self.request(env_pb2.EnvRequest(step=req))
        out = []
        for r in resp.step.results:
            if r.status.code:
                out.append(StepResult(r.handle, error=RemoteError(r.status.code, r.status.message)))
            else:
                out.append(StepResult(r.handle, EnvObservation.from_proto(r.observation, self.decode_images)))
        return out

    async def step_one(self, handle: int, text: str, strict: bool = False) -> EnvObservation:
        return (await self.step([(handle, text)], strict))[0].unwrap()

    async def close(self, handles: Iterable[int]) -> int:
        resp = await self.request(env_pb2.EnvRequest(close=env_pb2.CloseRequest(handles=list(handles))))
        return resp.close.closed

    async def request(self, req: env_pb2.EnvRequest) -> env_pb2.EnvResponse:
        """Send one request (its request_id is assigned here) and await its response; raises RemoteError."""
        if self._call is None:
            await self.connect()
        fut = asyncio.get_running_loop().create_future()
        async with self._write_lock:  # write order == FIFO order of pending futures
            if self._closed is not None:
                raise self._closed
            req.request_id = next(self._ids)
            self._pending.append((req.request_id, fut))
            assert self._call is not None  # connect() opened it
            try:
                await self._call.write(req)
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
                pass  # the reader sees the stream end and fails the future with its status
        resp = await fut
        raise_for_status(resp.status)
        return resp

    # --- internals ----------------------------------------------------------------------
    async def _read_loop(self) -> None:
        assert self._call is not None  # connect() opened it before starting this task
        try:
            while True:
                resp = await self._call.read()
                if resp is grpc.aio.EOF:
                    self._fail_all(EnvStreamClosed(grpc.StatusCode.UNAVAILABLE.value[0], "server ended the stream"))
                    return
                if not self._pending:
                    self._fail_all(EnvStreamClosed(grpc.StatusCode.INTERNAL.value[0], f"unexpected response {resp.request_id}"))
                    return
                rid, fut = self._pending.popleft()
                if resp.request_id != rid:
                    self._fail_all(EnvStreamClosed(grpc.StatusCode.INTERNAL.value[0], f"response {resp.request_id} arrived while waiting for {rid}"))
                    fut.cancel()
                    return
                if not fut.done():
                    fut.set_result(resp)
        except grpc.aio.AioRpcError as e:
            self._fail_all(EnvStreamClosed(e.code().value[0], e.details() or e.code().name))
        except asyncio.CancelledError:
            self._fail_all(EnvStreamClosed(grpc.StatusCode.CANCELLED.value[0], "client closed the stream"))
            raise

    def _fail_all(self, err: EnvStreamClosed) -> None:
        if self._closed is None:
            self._closed = err
        while self._pending:
            _, fut = self._pending.popleft()
            if not fut.done():
                fut.set_exception(self._closed)


def _str(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)
