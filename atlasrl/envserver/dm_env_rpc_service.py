"""dm_env_rpc v1 ``Environment`` service over the same envs, so DeepMind's client drives them unchanged.

    conn = dm_env_rpc.v1.connection.create_secure_channel_and_connect(addr, grpc.local_channel_credentials())
    env, world = dm_env_adaptor.create_and_join_world(
        conn, create_world_settings={"env_id": "frozenlake", "seed": 3, "config": {"size": "4"}},
        join_world_settings={})
    ts = env.reset(); ts = env.step({"action": "Right"})     # ts.observation["RGB"], ["text"], ...

Worlds: CreateWorld settings ``env_id`` (string, required), ``seed`` (int),
``config.<key>`` (scalars, sent to the env as strings; the adaptor flattens a
nested ``config`` dict to these). A world is one env instance; it counts against
--max-envs and is destroyed when the stream that created it ends (so a crashed
client leaks nothing). One stream joins at most one world; a world has at most
one joined stream. With an idle timeout, a stream without a request for that long
ends with DEADLINE_EXCEEDED and its worlds are destroyed.

Episodes follow dm_env_rpc: the first Step after JoinWorld, Reset or the end of
an episode starts a sequence (its actions are ignored) and returns RUNNING;
``TERMINATED`` ends by the task (discount 0), ``INTERRUPTED`` by the step limit
(discount 1). A Step without an action mid-episode returns the current
observation without stepping. Actions: ``action``, a string (the env's action
text, never strict: bad text is a penalised no-op, ``info`` says why).
Errors come back as ``google.rpc.Status`` in the response; the stream goes on.
"""
from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass

import grpc
import numpy as np
from dm_env_rpc.v1 import dm_env_rpc_pb2 as dm
from dm_env_rpc.v1 import tensor_utils
from google.protobuf import json_format
from google.rpc import status_pb2

from atlasrl import codec
from atlasrl.codec import CodecError
from atlasrl.envserver.sessions import EnvManager, Session
from atlasrl.rpc.errors import FailedPrecondition, InvalidArgument, MalformedRequest, NotFound, ServiceError, status_of
from atlasrl.v1 import env_pb2

ACTION_UID = 1
_REQUESTS = ("create_world", "join_world", "step", "reset", "reset_world", "leave_world", "destroy_world", "extension")
_NEEDS_START, _RUNNING, _TERMINATED, _INTERRUPTED = "needs_start", dm.RUNNING, dm.TERMINATED, dm.INTERRUPTED


def _spec(name: str, dtype, shape=(), lo=None, hi=None) -> dm.TensorSpec:
    s = dm.TensorSpec(name=name, dtype=dtype, shape=list(shape))
    for bound, value in ((s.min, lo), (s.max, hi)):
        if value is not None:
            field = _VALUE_FIELD[dtype]
            getattr(bound, field).CopyFrom(getattr(tensor_utils.pack_tensor(np.array(value, _NP[dtype])), field))
    return s


_VALUE_FIELD = {dm.UINT8: "uint8s", dm.DOUBLE: "doubles", dm.INT64: "int64s"}
_NP = {dm.UINT8: np.uint8, dm.DOUBLE: np.float64, dm.INT64: np.int64}


def action_observation_specs(spec: env_pb2.EnvSpec) -> dm.ActionObservationSpecs:
    specs = dm.ActionObservationSpecs()
    specs.actions[ACTION_UID].CopyFrom(dm.TensorSpec(name="action", dtype=dm.STRING))
    obs = [
        _spec("RGB", dm.UINT8, spec.image_shape, 0, 255),
        _spec("text", dm.STRING),
        _spec("reward", dm.DOUBLE),
        _spec("discount", dm.DOUBLE, (), 0.0, 1.0),
        _spec("success", dm.BOOL),
        _spec("step", dm.INT64, (), 0),
        _spec("agent", dm.INT32, (2,)),
        _spec("layout_key", dm.STRING),
        _spec("info", dm.STRING),
    ]
    for name in list(spec.camera_names)[1:]:
        obs.append(_spec(f"RGB_{name}", dm.UINT8, spec.image_shape, 0, 255))
    for uid, s in enumerate(obs, start=1):
        specs.observations[uid].CopyFrom(s)
    return specs


def observation_tensors(obs: env_pb2.Observation, state, specs: dm.ActionObservationSpecs, uids, cameras: list[str]) -> dict[int, dm.Tensor]:
    values = {
        "text": obs.text,
        "reward": np.float64(obs.reward),
        "discount": np.float64(0.0 if state == dm.TERMINATED else 1.0),
        "success": np.bool_(obs.success),
        "step": np.int64(obs.step),
        "agent": np.array([obs.agent.row, obs.agent.col], np.int32),
        "layout_key": obs.layout_key,
        "info": json.dumps(json_format.MessageToDict(obs.info), sort_keys=True),
    }
    out = {}
    for uid in uids:
        name = specs.observations[uid].name
        if name == "RGB" or name.startswith("RGB_"):
            i = 0 if name == "RGB" else cameras.index(name[4:])
            out[uid] = tensor_utils.pack_tensor(codec.decode(obs.images[i]))
        else:
            out[uid] = tensor_utils.pack_tensor(values[name])
    return out


@dataclass
class World:
    name: str
    handle: int
    owner: Session
    spec: env_pb2.EnvSpec
    specs: dm.ActionObservationSpecs
    joined: bool = False
    state: object = _NEEDS_START
    pending: env_pb2.Observation | None = None   # from Reset/ResetWorld, returned by the next Step
    last: env_pb2.Observation | None = None


class DmEnvRpcServicer:
    def __init__(self, manager: EnvManager, idle_timeout_s: float | None = None):
        self.manager = manager
        self.idle_timeout_s = idle_timeout_s
        self.worlds: dict[str, World] = {}
        self._names = itertools.count(1)

    def drain(self) -> None:
        """Nothing buffered here: once draining, every request is answered with UNAVAILABLE."""

    async def Process(self, requests, context):
        session = self.manager.new_session("dm_env_rpc")
        conn = _Conn(session)
        try:
            while True:
                try:
                    req = await asyncio.wait_for(requests.__anext__(), None if self.manager.draining.is_set() else self.idle_timeout_s)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    n = len(conn.session.envs)
                    await self.manager.end_session(conn.session)
                    await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                        f"connection idle for more than {self.idle_timeout_s:g} s (idle timeout); its {n} worlds were destroyed")
                except MalformedRequest as e:
                    yield _error(e)
                    continue
                if self.manager.draining.is_set():  # as EnvService: answer, never cut a stream mid-write
                    yield _error(ServiceError("env server is shutting down; open a world on another server", grpc.StatusCode.UNAVAILABLE))
                    continue
                yield await self._answer(conn, req)
        finally:
            if conn.world is not None:
                conn.world.joined = False
            for name in [n for n, w in self.worlds.items() if w.owner is session]:
                del self.worlds[name]
            await self.manager.end_session(session)

    async def _answer(self, conn: _Conn, req: dm.EnvironmentRequest) -> dm.EnvironmentResponse:
        kind = req.WhichOneof("payload")
        try:
            if kind is None:
                raise InvalidArgument(f"EnvironmentRequest has no payload: set one of {', '.join(_REQUESTS)}")
            if kind == "extension":
                raise ServiceError(f"extension {req.extension.type_url or '(empty)'} is not supported", grpc.StatusCode.UNIMPLEMENTED)
            result = await getattr(self, f"_{kind}")(conn, getattr(req, kind))
            return dm.EnvironmentResponse(**{kind: result})
        except (ServiceError, CodecError) as e:
            self.manager.metrics.error(f"dm_{kind}", status_of(e)[0].value[0])
            return _error(e)

    async def _create_world(self, conn, req: dm.CreateWorldRequest):
        env_id, seed, config = None, None, {}
        for key, tensor in req.settings.items():
            value = _scalar(key, tensor)
            if key == "env_id":
                env_id = str(value)
            elif key == "seed":
                if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                    raise InvalidArgument(f"world setting 'seed' must be an integer, got {type(value).__name__}")
                seed = int(value)
            elif key.startswith("config.") and len(key) > 7:
                config[key[7:]] = str(value).lower() if isinstance(value, (bool, np.bool_)) else str(value)
            else:
                raise InvalidArgument(f"unknown world setting '{key}'; accepted: env_id, seed, config.<key>")
        if not env_id:
            raise InvalidArgument("world setting 'env_id' (string) is required, e.g. 'frozenlake'")
        handle, spec_bytes = await self.manager.open(conn.session, env_id, config, seed)
        spec = env_pb2.EnvSpec.FromString(spec_bytes)
        name = f"{env_id}-{next(self._names)}"
        self.worlds[name] = World(name, handle, conn.session, spec, action_observation_specs(spec))
        return dm.CreateWorldResponse(world_name=name)

    async def _join_world(self, conn, req: dm.JoinWorldRequest):
        if conn.world is not None:
            raise FailedPrecondition(f"this stream already joined world '{conn.world.name}'; leave it first")
        world = self._world(req.world_name)
        if req.settings:
            raise InvalidArgument(f"JoinWorld takes no settings; got {sorted(req.settings)}")
        if world.joined:
            raise FailedPrecondition(f"world '{world.name}' is already joined by another stream")
        world.joined, world.state, conn.world = True, _NEEDS_START, world
        return dm.JoinWorldResponse(specs=world.specs)

    async def _leave_world(self, conn, req):
        if conn.world is not None:
            conn.world.joined = False
            conn.world = None
        return dm.LeaveWorldResponse()

    async def _destroy_world(self, conn, req: dm.DestroyWorldRequest):
        world = self._world(req.world_name)
        if world.joined:
            raise FailedPrecondition(f"world '{world.name}' is joined; leave it before destroying it")
        del self.worlds[world.name]
        await self.manager.close(world.owner, [world.handle])
        return dm.DestroyWorldResponse()

    async def _reset(self, conn, req: dm.ResetRequest):
        if conn.world is None:
            raise FailedPrecondition("Reset needs a joined world: send JoinWorld first")
        await self._restart(conn.world, _seed_setting(req.settings, "Reset"))
        return dm.ResetResponse(specs=conn.world.specs)

    async def _reset_world(self, conn, req: dm.ResetWorldRequest):
        await self._restart(self._world(req.world_name), _seed_setting(req.settings, "ResetWorld"))
        return dm.ResetWorldResponse()

    async def _step(self, conn, req: dm.StepRequest):
        world = conn.world
        if world is None:
            raise FailedPrecondition("Step needs a joined world: send CreateWorld and JoinWorld first")
        uids = list(dict.fromkeys(req.requested_observations))
        bad = [u for u in uids if u not in world.specs.observations]
        if bad:
            raise InvalidArgument(f"requested observation uids {bad} do not exist; valid: {sorted(world.specs.observations)}")
        if world.state in (_NEEDS_START, _TERMINATED, _INTERRUPTED):
            if world.pending is None:
                await self._restart(world, None)
            obs, world.pending, world.state = world.pending, None, _RUNNING
        elif req.actions:
            text = _action_text(req.actions)
            [o] = await self.manager.step(world.owner, [(world.handle, text)], strict=False)
            if o.code:
                raise ServiceError(o.message, _code(o.code))
            obs = env_pb2.Observation.FromString(o.observation)
            world.state = _TERMINATED if obs.terminated else _INTERRUPTED if obs.truncated else _RUNNING
        else:
            obs = world.last
        world.last = obs
        return dm.StepResponse(state=world.state, observations=observation_tensors(obs, world.state, world.specs, uids, list(world.spec.camera_names)))

    async def _restart(self, world: World, seed: int | None) -> None:
        o = await self.manager.reset(world.owner, world.handle, seed)
        if o.code:
            raise ServiceError(o.message, _code(o.code))
        world.pending, world.state = env_pb2.Observation.FromString(o.observation), _NEEDS_START

    def _world(self, name: str) -> World:
        world = self.worlds.get(name)
        if world is None:
            raise NotFound(f"world '{name}' does not exist; worlds: {', '.join(self.worlds) or 'none'}")
        return world


@dataclass
class _Conn:
    session: Session
    world: World | None = None


def _action_text(actions) -> str:
    extra = [u for u in actions if u != ACTION_UID]
    if extra:
        raise InvalidArgument(f"action uids {extra} do not exist; the only action is uid {ACTION_UID} ('action', a string)")
    t = actions[ACTION_UID]
    if t.WhichOneof("payload") != "strings" or list(t.shape) not in ([],) or len(t.strings.array) != 1:
        raise InvalidArgument(f"action 'action' must be one string (shape []), got {t.WhichOneof('payload')} of shape {list(t.shape)}")
    return t.strings.array[0]


def _scalar(key: str, tensor: dm.Tensor):
    try:
        value = tensor_utils.unpack_tensor(tensor)
    except Exception as e:  # noqa: BLE001 - any unpack failure means a bad tensor
        raise InvalidArgument(f"setting '{key}' is not a valid tensor: {e}") from None
    value = np.asarray(value)
    if value.size != 1:
        raise InvalidArgument(f"setting '{key}' must be a scalar, got shape {list(value.shape)}")
    value = value.reshape(()).item()
    return value.decode() if isinstance(value, bytes) else value


def _seed_setting(settings, what: str) -> int | None:
    seed = None
    for key, tensor in settings.items():
        value = _scalar(key, tensor)
        if key != "seed" or isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InvalidArgument(f"{what} accepts only the integer setting 'seed'; got '{key}'")
        seed = int(value)
    return seed


def _code(number: int) -> grpc.StatusCode:
    return next((c for c in grpc.StatusCode if c.value[0] == number), grpc.StatusCode.UNKNOWN)


def _error(exc: BaseException) -> dm.EnvironmentResponse:
    code, message = status_of(exc)
    return dm.EnvironmentResponse(error=status_pb2.Status(code=code.value[0], message=message))
