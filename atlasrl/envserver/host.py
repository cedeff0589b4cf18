"""The envs of one worker process (or of the server process when workers == 0).

Plain synchronous code that knows protobuf but not gRPC: each call returns
ready-to-send bytes (a serialized ``Observation`` or ``EnvSpec``) plus the facts
the server needs for routing and metrics, so the event loop never re-encodes.
Errors come back as ``(code, message)`` pairs with gRPC status code numbers.
"""
from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass

import grpc

from atlasrl.envserver import registry
from atlasrl.envserver.base import EnvConfigError, InvalidActionText, TextEnv
from atlasrl.envserver.convert import FrameCache, observation_bytes, spec_to_proto
from atlasrl.envserver.numeric import numeric_action
from atlasrl.v1 import tensor_pb2

log = logging.getLogger("atlasrl.envserver")

OK = 0
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]
INTERNAL = grpc.StatusCode.INTERNAL.value[0]


@dataclass
class Outcome:
    """Result of one reset or one action, picklable across the worker pipe."""

    code: int = OK
    message: str = ""
    observation: bytes = b""  # serialized atlasrl.v1.Observation when code == OK
    done: bool = False        # terminated or truncated
    env_id: str = ""
    seconds: float = 0.0      # env step/reset + render + encode
    raw_bytes: int = 0        # image bytes before the codec
    wire_bytes: int = 0       # image bytes after the codec
    reset: Outcome | None = None  # a step's automatic reset (StepRequest.auto_reset) after its episode ended

    @property
    def restarted(self) -> bytes | None:
        """The automatic reset's first observation when there was one and it succeeded, else None."""
        return self.reset.observation if self.reset is not None and not self.reset.code else None


class HostError(Exception):
    """An env call failed; carries the gRPC status code number for the caller."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class EnvHost:
    def __init__(self, frame_cache_bytes: int = 0) -> None:
        self._frames = FrameCache(frame_cache_bytes)
        self._envs: dict[int, tuple[str, TextEnv, list[str]]] = {}
        self._scratch = itertools.count(1)
        self._cost: dict[tuple[str, str], float] = {}  # (env id, "step"|"reset") -> moving average of seconds

    def estimated_seconds(self, op: str, handles) -> float | None:
        """Expected time of ``op`` on these envs, from past calls; None when an env id has no history yet."""
        total = 0.0
        for h in handles:
            entry = self._envs.get(h)
            cost = self._cost.get((entry[0], op)) if entry else 0.0
            if cost is None:
                return None
            total += cost
        return total

    def __len__(self) -> int:
        return len(self._envs)

    def open(self, handle: int, env_id: str, config: dict[str, str], seed: int | None) -> bytes:
        """Create an instance; returns its serialized EnvSpec."""
        try:
            env = registry.make(env_id, config, seed)
        except registry.UnknownEnv as e:
            raise HostError(NOT_FOUND, str(e)) from None
        except (EnvConfigError, ValueError, TypeError) as e:
            raise HostError(INVALID_ARGUMENT, f"bad config for env '{env_id}': {e}") from None
        except Exception as e:  # a backend that cannot start (no Vulkan, ...)
            log.exception("opening %s failed", env_id)
            raise HostError(INTERNAL, f"env '{env_id}' failed to start: {type(e).__name__}: {e}") from None
        try:
            spec = env.spec_info()
            spec_bytes = spec_to_proto(spec).SerializeToString()
        except Exception as e:  # noqa: BLE001 - whatever a backend raises, its spec is bad
            _close_quietly(env)
            raise HostError(INTERNAL, f"env '{env_id}' has a bad spec: {type(e).__name__}: {e}") from None
        self._envs[handle] = (env_id, env, list(spec.camera_names))
        return spec_bytes

    def reset(self, handle: int, seed: int | None) -> Outcome:
        return self._run(handle, lambda env: env.text_reset(seed=seed), "reset")

    def reset_many(self, resets: list[tuple[int, int | None]]) -> list[Outcome]:
        """``reset`` of each (handle, seed), in order: a ResetBatch request's entries held by this host."""
        return [self.reset(h, seed) for h, seed in resets]

    def step(self, actions: list[tuple[int, str | tensor_pb2.Tensor]], strict: bool, auto_reset: bool = False) -> list[Outcome]:
        """Text actions, or numeric ones (an ``Action.values`` Tensor, checked by atlasrl/envserver/numeric.py).

        With ``auto_reset`` an action that ends its episode also resets that env (no seed: the instance's RNG
        goes on) and the reset's outcome rides on the step's, so the client saves a round trip per episode."""
        out = []
        for h, action in actions:
            o = self._run(h, lambda env, a=action: env.text_step(a, strict=strict) if isinstance(a, str)
                          else env.numeric_step(numeric_action(a, env.spec_info())), "step")
            if auto_reset and o.done and not o.code:
                o.reset = self.reset(h, None)
            out.append(o)
        return out

    def close(self, handles: list[int]) -> int:
        closed = 0
        for h in handles:
            entry = self._envs.pop(h, None)
            if entry is not None:
                _close_quietly(entry[1])
                closed += 1
        return closed

    def close_all(self) -> None:
        self.close(list(self._envs))

    def default_spec(self, env_id: str) -> bytes:
        """Spec of ``env_id`` with its default configuration (opens and closes a throwaway instance)."""
        handle = -next(self._scratch)  # negative: never a client's handle; unique: concurrent ListEnvs calls
        spec = self.open(handle, env_id, {}, 0)
        self.close([handle])
        return spec

    def _run(self, handle: int, call, what: str) -> Outcome:
        entry = self._envs.get(handle)
        if entry is None:
            return Outcome(NOT_FOUND, f"env handle {handle} is not open")
        env_id, env, cameras = entry
        t0 = time.perf_counter()
        try:
            out = call(env)
            data, raw, wire = observation_bytes(out, cameras, self._frames)
        except InvalidActionText as e:
            return Outcome(INVALID_ARGUMENT, f"invalid action for env handle {handle} ({env_id}): {e}", env_id=env_id)
        except Exception as e:  # one env failing must not take others down
            log.exception("%s of %s (handle %d) failed", what, env_id, handle)
            return Outcome(INTERNAL, f"{what} of env handle {handle} ({env_id}) failed: {type(e).__name__}: {e}", env_id=env_id)
        seconds = time.perf_counter() - t0
        prev = self._cost.get((env_id, what))
        self._cost[(env_id, what)] = seconds if prev is None else 0.9 * prev + 0.1 * seconds
        return Outcome(
            observation=data,
            done=bool(out.terminated or out.truncated),
            env_id=env_id,
            seconds=seconds,
            raw_bytes=raw,
            wire_bytes=wire,
        )


def _close_quietly(env: TextEnv) -> None:
    try:
        env.close()
    except Exception:
        log.warning("closing an env raised", exc_info=True)
