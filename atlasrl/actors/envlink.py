"""EnvLink: the actor's pipelined Session stream to one env server.

    link = EnvLink("127.0.0.1:50051")
    handle, spec = await link.open("frozenlake", {"text_mode": "relative"}, seed=None)
    obs = await link.reset(handle, seed=7)
    results = await link.step([(handle, "Left"), (other, "Up")])   # Observation or RemoteError each
    await link.close()

Requests are written as soon as they are made and matched to responses by
request_id, so many slots' resets share one stream without waiting for each
other. Any transport failure (server died, stream cut) fails every pending
request with ``EnvServerDown``, marks the link ``down`` and forgets its
handles (they belonged to the dead stream); ``reconnect()`` opens a fresh
stream and the caller reopens its sessions.
"""
from __future__ import annotations

import asyncio
import itertools
import logging

import grpc

from atlasrl.rpc import make_channel
from atlasrl.rpc.errors import RemoteError
from atlasrl.v1 import env_pb2, env_pb2_grpc

log = logging.getLogger("atlasrl.actors.envlink")


class EnvServerDown(Exception):
    """The env server's stream failed; every session on it is gone."""


class EnvLink:
    def __init__(self, address: str, *, connect_timeout_s: float = 2.0, request_timeout_s: float = 120.0):
        self.address = address
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        self.down = True
        self._channel: grpc.aio.Channel | None = None
        self._call = None
        self._reader: asyncio.Task | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._write_lock = asyncio.Lock()  # grpc.aio allows one write in flight per stream

    async def reconnect(self) -> None:
        """Open a fresh Session stream; raises EnvServerDown if the server does not answer."""
        await self._teardown()
        self._channel = make_channel(self.address)
        try:
            await asyncio.wait_for(self._channel.channel_ready(), self.connect_timeout_s)
        except (TimeoutError, grpc.aio.AioRpcError) as e:
            await self._teardown()
            raise EnvServerDown(f"env server {self.address} is unreachable: {type(e).__name__}") from None
        self._call = env_pb2_grpc.EnvServiceStub(self._channel).Session()
        self._reader = asyncio.create_task(self._read_forever(self._call))
        self.down = False

    async def open(self, env_id: str, config: dict[str, str], seed: int | None = None) -> tuple[int, env_pb2.EnvSpec]:
        if self.down:
            await self.reconnect()
        req = env_pb2.OpenRequest(env_id=env_id, config=config)
        if seed is not None:
            req.seed = seed
        resp = await self._request(env_pb2.EnvRequest(open=req))
        return resp.open.handle, resp.open.spec

    async def reset(self, handle: int, seed: int | None = None) -> env_pb2.Observation:
        req = env_pb2.ResetRequest(handle=handle)
        if seed is not None:
            req.seed = seed
        resp = await self._request(env_pb2.EnvRequest(reset=req))
        return resp.reset.observation

    async def step(self, actions: list[tuple[int, str]]) -> list[env_pb2.Observation | RemoteError]:
        req = env_pb2.StepRequest(actions=[env_pb2.Action(handle=h, text=t) for h, t in actions])
        resp = await self._request(env_pb2.EnvRequest(step=req))
        out: list[env_pb2.Observation | RemoteError] = []
        for r in resp.step.results:
            out.append(r.observation if r.status.code == 0 else RemoteError(r.status.code, r.status.message))
        if len(out) != len(actions):
            raise EnvServerDown(f"env server {self.address} answered {len(out)} of {len(actions)} actions")
        return out

    async def close(self) -> None:
        await self._teardown()

    # -- plumbing ------------------------------------------------------------
    async def _request(self, req: env_pb2.EnvRequest) -> env_pb2.EnvResponse:
        if self.down or self._call is None:
            raise EnvServerDown(f"env server {self.address} is down")
        req.request_id = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[req.request_id] = fut
        try:
            async with self._write_lock:
                await self._call.write(req)
            resp = await asyncio.wait_for(fut, self.request_timeout_s)
        except (TimeoutError, grpc.aio.AioRpcError, asyncio.InvalidStateError) as e:
            self._fail(f"{type(e).__name__}: {e}")
            raise EnvServerDown(f"env server {self.address} failed: {type(e).__name__}") from None
        finally:
            self._pending.pop(req.request_id, None)
        if resp.status.code != 0:
            raise RemoteError(resp.status.code, resp.status.message)
        return resp

    async def _read_forever(self, call) -> None:
        try:
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    raise EnvServerDown("stream closed by the server")
                fut = self._pending.get(resp.request_id)
                if fut is not None and not fut.done():
                    fut.set_result(resp)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - any read failure means the stream is gone
            self._fail(f"{type(e).__name__}: {e.details() if hasattr(e, 'details') else e}")

    def _fail(self, why: str) -> None:
        if not self.down:
            log.warning("env server %s stream failed: %s", self.address, why)
        self.down = True
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(EnvServerDown(f"env server {self.address} failed: {why}"))

    async def _teardown(self) -> None:
        self.down = True
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing: whatever the cancelled task ended with is not our error
                pass
            self._reader = None
        if self._call is not None:
            self._call.cancel()
            self._call = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(EnvServerDown(f"env server {self.address} link closed"))
