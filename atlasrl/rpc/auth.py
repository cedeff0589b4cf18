"""Server guard (token + role check, per-client session cap, stream idle timeout) and the client token interceptors.

The guard wraps every handler of a server, health excepted for tokens:

- no or unknown bearer token -> UNAUTHENTICATED; a valid token of a role the
  method does not allow -> PERMISSION_DENIED (scopes in ``security.DEFAULT_METHOD_ROLES``);
- a client (token, else certificate CN, else peer address) holding
  ``max_sessions_per_client`` live streams gets RESOURCE_EXHAUSTED for the next one;
- a client stream silent for ``session_idle_timeout_s`` ends with DEADLINE_EXCEEDED.

A token file that changes on disk is re-read (at most once a second), so tokens rotate without a restart.
"""
from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import os
import time
from typing import NoReturn

import grpc

from atlasrl.metrics import Metrics
from atlasrl.rpc.config import SecurityConfig
from atlasrl.rpc.security import ANY, SecurityError, TokenStore, allowed_roles, load_tokens, token_digest

log = logging.getLogger("atlasrl.rpc")

AUTH_HEADER = "authorization"
_CALLER_ROLE: contextvars.ContextVar[str | None] = contextvars.ContextVar("atlasrl_caller_role", default=None)


def caller_role() -> str | None:
    """The role of the bearer token of the RPC being served (set by ServerGuard before the handler runs, in the
    handler's own task); None when the server checks no tokens."""
    return _CALLER_ROLE.get()


class ServerGuard(grpc.aio.ServerInterceptor):
    def __init__(self, sec: SecurityConfig, tokens: TokenStore, *, method_roles: dict[str, list[str]] | None = None,
                 max_sessions_per_client: int | None = None, idle_timeout_s: float | None = None,
                 metrics: Metrics | None = None):
        self.sec, self.tokens, self.method_roles = sec, tokens, method_roles
        self.max_sessions, self.idle_timeout_s = max_sessions_per_client, idle_timeout_s
        self.sessions: collections.Counter[str] = collections.Counter()
        self._token_path = sec.token_file or os.environ.get("ATLASRL_TOKEN_FILE")
        self._mtime = self._stat()
        self._checked = time.monotonic()
        self._denied = metrics.counter("rpc_auth_denied_total", "RPCs refused by the token/role check", ["code"]) if metrics else None
        self._limited = metrics.counter("rpc_session_limit_total", "Streams refused by the per-client session cap") if metrics else None

    def _stat(self) -> float | None:
        try:
            return os.stat(self._token_path).st_mtime_ns if self._token_path else None
        except OSError:
            return None

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if not self._token_path or now - self._checked < 1.0:
            return
        self._checked = now
        mtime = self._stat()
        if mtime is None or mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            fresh = load_tokens(self.sec)
        except SecurityError as e:
            log.error("token file changed but is unusable, keeping the previous tokens: %s", e)
            return
        if fresh:
            self.tokens = fresh
            log.warning("token file reloaded (%d accepted tokens)", len(fresh.digests))

    async def _deny(self, context, code: grpc.StatusCode, message: str) -> NoReturn:
        if self._denied:
            self._denied.labels(code.name).inc()
        await context.abort(code, message)
        raise AssertionError("context.abort() raises")  # for the type checker: callers rely on it

    async def _admit(self, method: str, context) -> str:
        """Check the token and role; return the client's identity for session accounting."""
        roles = allowed_roles(method, self.method_roles)
        if self.tokens and roles is not None:
            self._maybe_reload()
            token = None
            for key, value in context.invocation_metadata() or ():
                if key == AUTH_HEADER and isinstance(value, str) and value.startswith("Bearer "):
                    token = value[len("Bearer "):]
            if token is None:
                await self._deny(context, grpc.StatusCode.UNAUTHENTICATED,
                                 f"{method}: missing bearer token (metadata 'authorization: Bearer <token>')")
            role = self.tokens.role_of(token)
            if role is None:
                await self._deny(context, grpc.StatusCode.UNAUTHENTICATED, f"{method}: invalid token")
            if ANY not in roles and role not in roles:
                await self._deny(context, grpc.StatusCode.PERMISSION_DENIED,
                                 f"role '{role}' may not call {method.lstrip('/')} (allowed: {', '.join(roles)})")
            _CALLER_ROLE.set(role)
            return f"{role}:{token_digest(token).hex()[:12]}"
        return _peer_identity(context)

    def _acquire(self, who: str) -> bool:
        if self.max_sessions is not None and self.sessions[who] >= self.max_sessions:
            return False
        self.sessions[who] += 1
        return True

    def _release(self, who: str) -> None:
        self.sessions[who] -= 1
        if self.sessions[who] <= 0:
            del self.sessions[who]

    async def _open_session(self, method: str, context) -> str:
        who = await self._admit(method, context)
        if not self._acquire(who):
            if self._limited:
                self._limited.inc()
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{method}: client {who} already has {self.max_sessions} live sessions (the maximum); close one first")
        return who

    def _idle(self, requests, context):
        if self.idle_timeout_s is None:
            return requests
        return _idle_guard(requests, context, self.idle_timeout_s)

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request, context):
                await self._admit(method, context)
                return await inner(request, context)

            return handler._replace(unary_unary=unary_unary)
        if handler.unary_stream:
            inner_us = handler.unary_stream

            async def unary_stream(request, context):
                who = await self._open_session(method, context)
                try:
                    async for resp in inner_us(request, context):
                        yield resp
                finally:
                    self._release(who)

            return handler._replace(unary_stream=unary_stream)
        if handler.stream_unary:
            inner_su = handler.stream_unary

            async def stream_unary(requests, context):
                who = await self._open_session(method, context)
                try:
                    return await inner_su(self._idle(requests, context), context)
                finally:
                    self._release(who)

            return handler._replace(stream_unary=stream_unary)
        inner_ss = handler.stream_stream

        async def stream_stream(requests, context):
            who = await self._open_session(method, context)
            try:
                async for resp in inner_ss(self._idle(requests, context), context):
                    yield resp
            finally:
                self._release(who)

        return handler._replace(stream_stream=stream_stream)


async def _idle_guard(requests, context, timeout: float):
    it = requests.__aiter__()
    while True:
        try:
            item = await asyncio.wait_for(it.__anext__(), timeout)
        except StopAsyncIteration:
            return
        except TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"session idle for more than {timeout:g} s (idle timeout)")
        yield item


def _peer_identity(context) -> str:
    try:
        cn = (context.auth_context() or {}).get("x509_common_name")
    except Exception:  # noqa: BLE001 - plaintext contexts may have none
        cn = None
    if cn:
        return "cert:" + cn[0].decode(errors="replace")
    peer = context.peer() or "unknown"
    return "peer:" + peer.rsplit(":", 1)[0]


class _AioToken:
    """Mixin for the four aio interceptor kinds (see aio_token_interceptors): adds ``authorization: Bearer <token>`` to every call of an aio channel."""

    def __init__(self, token: str):
        self._header = (AUTH_HEADER, f"Bearer {token}")

    def __repr__(self) -> str:
        return "_AioToken(<redacted>)"

    def _details(self, d):
        md = grpc.aio.Metadata(*(tuple(d.metadata) if d.metadata else ()), self._header)
        return d._replace(metadata=md)

    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(self._details(details), request)

    async def intercept_unary_stream(self, continuation, details, request):
        return await continuation(self._details(details), request)

    async def intercept_stream_unary(self, continuation, details, request_iterator):
        return await continuation(self._details(details), request_iterator)

    async def intercept_stream_stream(self, continuation, details, request_iterator):
        return await continuation(self._details(details), request_iterator)


class _SyncDetails(collections.namedtuple("_SyncDetails", ("method", "timeout", "metadata", "credentials",
                                                           "wait_for_ready", "compression")), grpc.ClientCallDetails):
    pass


class _SyncToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                 grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, token: str):
        self._header = (AUTH_HEADER, f"Bearer {token}")

    def __repr__(self) -> str:
        return "_SyncToken(<redacted>)"

    def _details(self, d):
        md = list(d.metadata or ()) + [self._header]
        return _SyncDetails(d.method, d.timeout, md, d.credentials, getattr(d, "wait_for_ready", None),
                            getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


def aio_token_interceptors(token: str) -> list:
    """One interceptor per call kind: grpc.aio files each interceptor under the first kind it implements only."""
    return [type(f"_AioToken{kind}", (_AioToken, base), {})(token) for kind, base in (
        ("UU", grpc.aio.UnaryUnaryClientInterceptor), ("US", grpc.aio.UnaryStreamClientInterceptor),
        ("SU", grpc.aio.StreamUnaryClientInterceptor), ("SS", grpc.aio.StreamStreamClientInterceptor))]


def sync_token_interceptor(token: str) -> _SyncToken:
    return _SyncToken(token)
