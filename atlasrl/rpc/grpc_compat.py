"""Every patch atlasrl makes to grpcio's private API, in one place, each pinned to the grpcio it was written for.

    PATCHES                     # name -> Patch(written_for, issue, install, needed)
    install_all()               # make_channel calls it: every atlasrl client gets every patch

A patch reaches into grpcio internals that a release may change. ``Patch.written_for`` is the grpcio
major.minor it was checked against; tests/test_rpc_stream_status.py fails on any other version, so an upgrade
makes someone re-check the issue (is it fixed upstream? does the copy still match the code it replaces?)
and move the pin, instead of silently running a stale copy of grpcio's code.

## aio_write_status: keep the server's status when a client-stream write fails because the server ended the call

grpcio's asyncio client (1.85 and earlier; grpc/grpc#36066, fix proposed in
grpc/grpc#43486) turns a failed send into ``INTERNAL: Internal error from Core``
whenever the failed write is processed before the status the server already sent.
A server that ends a client-streaming or bidi call early (a bad token, a message
it refuses, a stale version) then reaches 1 to 5 in 100 callers as INTERNAL
instead of, say, PERMISSION_DENIED, so the caller cannot tell a refusal from a
broken server. The sync API reports the server's status here.

``install()`` replaces ``_StreamRequestMixin._write`` with a copy that, when a
send fails, first waits briefly for the call's status: Core fails sends once the
stream is closed and delivers the status with it. Only when no status arrives
(Core rejected the batch without ending the call) does it fall back to grpcio's
INTERNAL, which is what keeps waiters from hanging (grpc/grpc#34148).
``make_channel`` installs it, so every atlasrl client gets it.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc._cython import cygrpc
from grpc.aio import _call

STATUS_GRACE_S = 1.0
"""How long a failed send waits for the status Core is delivering before grpcio's INTERNAL stands."""

_original_write = _call._StreamRequestMixin._write


async def _write_keeping_status(self, request) -> None:
    if self.done():
        raise asyncio.InvalidStateError(_call._RPC_ALREADY_FINISHED_DETAILS)
    if self._done_writing_flag:
        raise asyncio.InvalidStateError(_call._RPC_HALF_CLOSED_DETAILS)
    if not self._metadata_sent.is_set():
        await self._metadata_sent.wait()
        if self.done():
            await self._raise_for_status()

    serialized_request = _call._common.serialize(request, self._request_serializer)
    try:
        await self._cython_call.send_serialized_message(serialized_request)
    except cygrpc.InternalError as err:
        try:
            await asyncio.wait_for(asyncio.shield(self._cython_call.status()), STATUS_GRACE_S)
        except TimeoutError:
            self._cython_call.set_internal_error(str(err))
        await self._raise_for_status()
    except asyncio.CancelledError:
        if not self.cancelled():
            self.cancel()
        raise


def needed() -> bool:
    """True while grpcio's write still overwrites the status unconditionally (the code this module replaces)
    and the module internals the copy uses are where it expects them."""
    internals = ("_RPC_ALREADY_FINISHED_DETAILS", "_RPC_HALF_CLOSED_DETAILS", "_common")
    return "set_internal_error" in _original_write.__code__.co_names and all(hasattr(_call, n) for n in internals)


def install() -> bool:
    """Patch grpcio's asyncio client once; returns whether the patched write is in place."""
    if _call._StreamRequestMixin._write is _write_keeping_status:
        return True
    if not needed():
        return False
    _call._StreamRequestMixin._write = _write_keeping_status
    return True


def uninstall() -> None:
    """Restore grpcio's own write (tests compare both)."""
    _call._StreamRequestMixin._write = _original_write


@dataclass(frozen=True)
class Patch:
    written_for: str              # grpcio major.minor the patch was checked against
    issue: str                    # why it exists; where to look on an upgrade
    install: Callable[[], bool]
    needed: Callable[[], bool]


PATCHES: dict[str, Patch] = {
    "aio_write_status": Patch("1.85", "https://github.com/grpc/grpc/issues/36066 (fix proposed: grpc/grpc#43486)",
                              install, needed),
}


def grpc_minor() -> str:
    return ".".join(grpc.__version__.split(".")[:2])


def install_all() -> dict[str, bool]:
    """Install every patch still needed; returns name -> whether it is in place."""
    return {name: p.install() for name, p in PATCHES.items()}
