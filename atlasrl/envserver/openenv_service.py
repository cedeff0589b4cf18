"""OpenEnv (``openenv-core``) protocol over the env server's envs, so OpenEnv's own client drives them unchanged.

    server: atlasrl envserver --env frozenlake,sokoban --openenv-port 8000
    client: env = GenericEnvClient(base_url="http://127.0.0.1:8000")          # async; .sync() for a sync wrapper
            r = await env.reset(env_id="frozenlake", seed=3, config={"size": "4"})
            r = await env.step({"action": "Right"})   # r.observation["text"], r.reward, r.done, ...

The app is openenv-core's own FastAPI server (``create_fastapi_app``: ``/ws``
sessions, ``/reset``, ``/step``, ``/state``, ``/schema``, ``/health``), running in
the env server's event loop. A WebSocket connection is one OpenEnv session and
one ``EnvManager`` session (protocol ``openenv``): the env it opens counts
against --max-envs and its steps in the env metrics, like a gRPC stream's.

Reset arguments (the client's ``reset(**kwargs)`` travels as the message's
``data``): ``env_id`` (default: --openenv-env), ``seed``, ``config`` (dict,
values sent as strings), ``image_format`` (``png``, the default: base64 PNG;
``list``: [H][W][C] ints like OpenEnv's BrowserGym ``screenshot``, ~35x the bytes
and ~50x slower per step in bench/env_throughput.py; ``none``), ``episode_id``
(echoed in ``state``). A reset with the same env id and config
reuses the open env; another one replaces it. Action: ``{"action": TEXT,
"strict": false}``; bad text is a penalised no-op (``info`` says why) unless
strict. Errors come back as OpenEnv error messages (``type: error``) whose
message starts with the gRPC status name; the connection stays usable.

This module imports openenv-core (the ``openenv`` extra); the env server
imports it only when --openenv-port is given.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import io
import logging
import socket
import time
from typing import Any

import grpc
import numpy as np
import uvicorn
from google.protobuf import json_format
from openenv.core.env_server.http_server import create_fastapi_app
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import Action, EnvironmentMetadata, Observation, State
from pydantic import Field

from atlasrl import codec
from atlasrl.envserver.config import EnvServerConfig
from atlasrl.envserver.host import Outcome
from atlasrl.envserver.sessions import EnvManager, Session
from atlasrl.rpc.errors import ServiceError, status_of
from atlasrl.rpc.security import TokenStore, default_security, load_tokens
from atlasrl.v1 import env_pb2

log = logging.getLogger("atlasrl.envserver")

PROTOCOL = "openenv"
IMAGE_FORMATS = ("png", "list", "none")
INLINE_IMAGE_BYTES = 64 * 1024  # frames up to this many raw bytes (128x128 RGB) are converted on the event loop
_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]
_INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
_FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION.value[0]


class AtlasAction(Action):
    """One turn: the env's action text (``"Right"``, ``"Right, Down"``, a ManiSkill vector as text)."""

    action: str = Field(..., description="Action text, as in the env's valid_actions / action_format")
    strict: bool = Field(False, description="Unparseable text fails the step instead of a penalised no-op")


class AtlasObservation(Observation):
    """One env output; ``reward`` and ``done`` travel beside it (OpenEnv's StepResult)."""

    env_id: str = ""
    text: str = ""
    success: bool = False
    terminated: bool = False
    truncated: bool = False
    step: int = 0
    layout_key: str = ""
    info: dict[str, Any] = Field(default_factory=dict)
    image: Any = None
    """Primary camera: a base64 PNG (image_format ``png``), [H][W][C] uint8 ints (``list``) or None (``none``)."""
    image_shape: list[int] = Field(default_factory=list)
    image_format: str = "png"
    extra_images: dict[str, Any] = Field(default_factory=dict)
    """Further cameras by name (ManiSkill), same format as ``image``."""


class OpenEnvError(RuntimeError):
    """A request failed; OpenEnv's server sends ``str(self)`` back as its error message."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{_NAMES.get(code, str(code))}: {message}")
        self.code = code


def _png(image: np.ndarray) -> str:
    from PIL import Image  # pillow comes with openenv-core (gradio)

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _image(image: np.ndarray, fmt: str) -> Any:
    if fmt == "png":
        return _png(image)
    if fmt == "none":
        return None
    return image.tolist()


def to_observation(data: bytes, env_id: str, fmt: str, cameras: list[str]) -> AtlasObservation:
    """A worker's serialized atlasrl.v1.Observation as an OpenEnv observation."""
    obs = env_pb2.Observation.FromString(data)
    images = [codec.decode(t) for t in obs.images]
    names = [cameras[i] if i < len(cameras) else (t.name or f"camera{i}") for i, t in enumerate(obs.images)]
    return AtlasObservation(
        env_id=env_id,
        text=obs.text,
        reward=float(obs.reward),
        done=bool(obs.terminated or obs.truncated),
        success=obs.success,
        terminated=obs.terminated,
        truncated=obs.truncated,
        step=obs.step,
        layout_key=obs.layout_key,
        info=json_format.MessageToDict(obs.info) if obs.HasField("info") else {},
        image=_image(images[0], fmt) if images else None,
        image_shape=list(images[0].shape) if images else [],
        image_format=fmt,
        extra_images={n: _image(im, fmt) for n, im in zip(names[1:], images[1:])},
    )


class Bridge:
    """What every OpenEnv session shares: the manager, its event loop and the server's defaults."""

    def __init__(self, manager: EnvManager, loop: asyncio.AbstractEventLoop, default_env: str):
        self.manager, self.loop, self.default_env = manager, loop, default_env


class AtlasEnvironment(Environment):
    """One OpenEnv session: at most one open env of the env server (reopened when reset names another)."""

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self, bridge: Bridge):
        super().__init__()
        self.bridge = bridge
        self.session: Session | None = None
        self.handle: int | None = None
        self.key: tuple[str, tuple[tuple[str, str], ...]] | None = None  # (env id, config) of the open env
        self.cameras: list[str] = []
        self.image_format = "png"
        self.episode_id: str | None = None
        self.steps = 0
        self.closed = False

    # --- OpenEnv API (async: runs in the env server's loop, beside the gRPC streams) ---
    async def reset_async(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> AtlasObservation:
        t0 = time.perf_counter()
        try:
            return await self._reset(seed, episode_id, **kwargs)
        except ServiceError as e:
            raise self._error("open", status_of(e)[0].value[0], str(e)) from None
        finally:
            self.bridge.manager.metrics.request_latency.labels("reset").observe(time.perf_counter() - t0)

    async def step_async(self, action: AtlasAction, timeout_s: float | None = None, **kwargs: Any) -> AtlasObservation:
        t0 = time.perf_counter()
        manager = self.bridge.manager
        try:
            self._check_serving("step")
            if self.session is None or self.handle is None:
                raise self._error("step", _FAILED_PRECONDITION, "no env is open in this session: send reset (env_id=...) first")
            try:
                (o,) = await manager.step(self.session, [(self.handle, action.action)], action.strict)
            except ServiceError as e:
                raise self._error("step", status_of(e)[0].value[0], str(e)) from None
            self.steps += 1
            return await self._observation(o)
        finally:
            manager.metrics.request_latency.labels("step").observe(time.perf_counter() - t0)

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> AtlasObservation:
        return self._call(self.reset_async(seed, episode_id, **kwargs))

    def step(self, action: AtlasAction, timeout_s: float | None = None, **kwargs: Any) -> AtlasObservation:
        return self._call(self.step_async(action, timeout_s, **kwargs))

    @property
    def state(self) -> State:
        env_id, config = self.key if self.key else ("", ())
        return State(episode_id=self.episode_id, step_count=self.steps, env_id=env_id, config=dict(config))

    def get_metadata(self) -> EnvironmentMetadata:
        return EnvironmentMetadata(name="atlasrl", description="atlasrl env server: reset(env_id=..., seed=..., config={...}); "
                                   f"step({{'action': TEXT}}). Default env: {self.bridge.default_env}.")

    def close(self) -> None:
        """Frees the session's env (OpenEnv calls this from a session thread, or in the loop for stateless HTTP)."""
        if self.closed:
            return
        self.closed = True
        if self.session is None:
            return
        end = self.bridge.manager.end_session(self.session)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.bridge.loop:
            task = asyncio.ensure_future(end)
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        else:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(end, self.bridge.loop).result(30)

    # --- internals ---------------------------------------------------------------------
    async def _reset(self, seed: int | None, episode_id: str | None, env_id: str | None = None,
                     config: dict[str, Any] | None = None, image_format: str | None = None, **unknown: Any) -> AtlasObservation:
        self._check_serving("reset")
        if unknown:
            raise self._error("reset", _INVALID_ARGUMENT, f"unknown reset arguments {sorted(unknown)}; "
                              "known: env_id, seed, config, image_format, episode_id")
        if image_format is not None:
            if image_format not in IMAGE_FORMATS:
                raise self._error("reset", _INVALID_ARGUMENT, f"image_format '{image_format}' is not one of {', '.join(IMAGE_FORMATS)}")
            self.image_format = image_format
        if config is not None and not isinstance(config, dict):
            raise self._error("reset", _INVALID_ARGUMENT, "config must be an object of key: value")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise self._error("reset", _INVALID_ARGUMENT, f"seed must be an integer, got {seed!r}")
        cfg = {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in (config or {}).items()}
        env_id = env_id or self.bridge.default_env
        if not isinstance(env_id, str):
            raise self._error("reset", _INVALID_ARGUMENT, f"env_id must be a string, got {env_id!r}")
        manager = self.bridge.manager
        if self.session is None:
            self.session = manager.new_session(PROTOCOL)
        key = (env_id, tuple(sorted(cfg.items())))
        if self.handle is None or key != self.key:
            if self.handle is not None:
                await manager.close(self.session, [self.handle])
                self.handle = self.key = None
            handle, spec_bytes = await manager.open(self.session, env_id, cfg, seed)
            self.handle, self.key = handle, key
            self.cameras = list(env_pb2.EnvSpec.FromString(spec_bytes).camera_names)
        o = await manager.reset(self.session, self.handle, seed)
        self.episode_id, self.steps = episode_id, 0
        return await self._observation(o)

    async def _observation(self, o: Outcome) -> AtlasObservation:
        if o.code:
            raise OpenEnvError(o.code, o.message)  # the manager has counted it
        env_id = self.key[0] if self.key else o.env_id
        args = (o.observation, env_id, self.image_format, self.cameras)
        if o.raw_bytes > INLINE_IMAGE_BYTES:  # decode + PNG/list off the loop that serves the gRPC streams too
            return await asyncio.to_thread(to_observation, *args)
        return to_observation(*args)

    def _check_serving(self, op: str) -> None:
        if self.bridge.manager.draining.is_set():
            raise self._error(op, _UNAVAILABLE, "env server is shutting down; open the env on another server")

    def _error(self, op: str, code: int, message: str) -> OpenEnvError:
        self.bridge.manager.metrics.error(op, code)
        return OpenEnvError(code, message)

    def _call(self, coro):
        """Sync entry points (unused by openenv-core's server, which prefers the async ones)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run_coroutine_threadsafe(coro, self.bridge.loop).result()
        coro.close()
        raise RuntimeError("call reset_async/step_async inside the event loop")


class Guard:
    """ASGI middleware around openenv-core's app.

    With tokens, every request but /health needs ``Authorization: Bearer <token>``
    (any role): HTTP gets 401, a WebSocket handshake 403. It also swallows the
    WebSocketDisconnect that openenv-core 0.3.0 raises when it closes a socket its
    client already closed (it catches only RuntimeError), which uvicorn would log
    as an error on every normal client exit.

    ``idle_timeout_s`` (the env server's ``idle_timeout_s``, as on the gRPC
    stream): a WebSocket with no message for that long is closed (code 1001,
    "idle timeout") and openenv-core sees a disconnect, which frees its env's
    slot of --max-envs. openenv-core 0.3.0 has no session timeout of its own.
    """

    def __init__(self, app, tokens: TokenStore | None, idle_timeout_s: float | None = None):
        self.app, self.tokens, self.idle_timeout_s = app, tokens, idle_timeout_s

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if self.tokens and kind in ("http", "websocket") and scope.get("path") != "/health" and not self._ok(scope):
            if kind == "websocket":  # closing before accept: the server answers the handshake with 403
                await receive()
                await send({"type": "websocket.close", "code": 1008})
                return
            await self._drain_body(receive)
            body = b'{"detail":"missing or invalid bearer token (Authorization: Bearer <token>)"}'
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        if kind != "websocket":
            await self.app(scope, receive, send)
            return
        from starlette.websockets import WebSocketDisconnect

        with contextlib.suppress(WebSocketDisconnect):
            await self.app(scope, self._idle_receive(receive, send) if self.idle_timeout_s else receive, send)

    @staticmethod
    async def _drain_body(receive, limit: int = 1 << 20) -> None:
        """Read (and drop) a refused request's body before answering. Answering first and closing with the body
        still unread makes the kernel reset the connection, and a client can lose the 401 to that reset (seen in
        CI as ConnectionResetError). Bounded so an unauthenticated client cannot make us read without end."""
        seen = 0
        while seen <= limit:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            seen += len(msg.get("body", b""))
            if not msg.get("more_body"):
                return

    def _idle_receive(self, receive, send):
        """``receive`` that turns a silence of idle_timeout_s into a close (to the client) and a disconnect (to
        the app). The app is waiting in receive then, so closing from here does not race one of its sends."""
        idle = self.idle_timeout_s

        async def wrapped():
            try:
                return await asyncio.wait_for(receive(), idle)
            except TimeoutError:
                log.info("OpenEnv WebSocket idle for more than %g s (idle timeout): closed", idle)
                with contextlib.suppress(Exception):   # the socket may be gone already
                    await send({"type": "websocket.close", "code": 1001, "reason": "idle timeout"})
                return {"type": "websocket.disconnect", "code": 1001}

        return wrapped

    def _ok(self, scope) -> bool:
        assert self.tokens is not None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                kind, _, token = value.decode("latin-1").partition(" ")
                return kind.lower() == "bearer" and self.tokens.role_of(token.strip()) is not None
        return False


async def authorize(client: Any, token: str) -> Any:
    """Connect an OpenEnv ``EnvClient`` to a token-protected server.

    openenv-core 0.3.0's client sends no headers; this opens its WebSocket with
    ``Authorization: Bearer <token>`` (uses the client's private ``_ws_url``,
    ``_ws`` and ``_max_message_size``). Call before the first reset.
    """
    from websockets.asyncio.client import connect

    client._ws = await connect(client._ws_url, additional_headers={"Authorization": f"Bearer {token}"},
                               max_size=client._max_message_size, open_timeout=client._connect_timeout)
    return client


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # the env server owns SIGTERM/SIGINT
        yield


def default_env_id(cfg: EnvServerConfig) -> str:
    """--openenv-env, else the first --env entry, else the first registered id."""
    from atlasrl.envserver import registry

    if cfg.openenv_env:
        return cfg.openenv_env
    if cfg.envs:
        return cfg.envs[0]
    ids = registry.list_ids(include_prefixed=False)
    return ids[0] if ids else ""


class OpenEnvServer:
    """openenv-core's FastAPI app on uvicorn, in the running loop, bound to ``cfg.host:cfg.openenv_port``."""

    def __init__(self, manager: EnvManager, cfg: EnvServerConfig):
        self.manager, self.cfg = manager, cfg
        self.default_env = default_env_id(cfg)
        if not cfg.allows(self.default_env):
            raise ValueError(f"--openenv-env '{self.default_env}' is not served here (--env {','.join(cfg.envs)})")
        sec = cfg.server_config().security or default_security()
        self.tokens = load_tokens(sec)
        self.tls = bool(sec.tls_cert and sec.tls_key)
        self._sec = sec
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task | None = None
        self.port = 0

    @property
    def url(self) -> str:
        host = self.cfg.host if ":" not in self.cfg.host else f"[{self.cfg.host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    async def start(self) -> int:
        bridge = Bridge(self.manager, asyncio.get_running_loop(), self.default_env)
        app: Any = create_fastapi_app(functools.partial(AtlasEnvironment, bridge), AtlasAction, AtlasObservation,
                                      max_concurrent_envs=self.cfg.max_envs)
        app = Guard(app, self.tokens or None, self.cfg.idle_timeout_s)
        family = socket.AF_INET6 if ":" in self.cfg.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.cfg.host.strip("[]"), self.cfg.openenv_port or 0))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on", ws_max_size=self.cfg.max_message_bytes,
                                timeout_graceful_shutdown=max(1, int(self.cfg.grace_s)),
                                ssl_certfile=str(self._sec.tls_cert) if self.tls else None,
                                ssl_keyfile=str(self._sec.tls_key) if self.tls else None)
        self._server = _Uvicorn(config)
        self._sock = sock
        self._task = asyncio.ensure_future(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the OpenEnv server stopped during start-up")
            await asyncio.sleep(0.01)
        log.info("OpenEnv on %s (default env %s, %s)", self.url, self.default_env,
                 "bearer tokens" if self.tokens else "unauthenticated")
        return self.port

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._task), self.cfg.grace_s + 5)
        if not self._task.done():
            self._task.cancel()
        self._sock.close()
