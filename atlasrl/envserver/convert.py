"""Env outputs <-> atlasrl.v1 protobuf, and splicing of pre-serialized observations.

Workers serialize each ``Observation`` once (render, zstd-1, Struct) and hand the
bytes to the event loop, which splices them into the response with the
length-delimited wire format instead of parsing and re-serializing them.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from atlasrl import codec
from atlasrl.envserver.base import EnvSpecInfo, StepOutput
from atlasrl.protowire import varint
from atlasrl.v1 import env_pb2

_ACTION_KINDS = {"discrete": env_pb2.ACTION_KIND_DISCRETE, "continuous": env_pb2.ACTION_KIND_CONTINUOUS}


def spec_to_proto(spec: EnvSpecInfo) -> env_pb2.EnvSpec:
    kind = _ACTION_KINDS.get(spec.action_kind)
    if kind is None:
        raise ValueError(f"env '{spec.env_id}' has action_kind '{spec.action_kind}'; expected one of {sorted(_ACTION_KINDS)}")
    return env_pb2.EnvSpec(
        env_id=spec.env_id,
        family=spec.family,
        image_shape=list(spec.image_shape),
        valid_actions=list(spec.valid_actions),
        max_steps=spec.max_steps,
        grid_rows=spec.grid_rows,
        grid_cols=spec.grid_cols,
        max_actions_per_turn=spec.max_actions_per_turn,
        action_kind=kind,
        action_format=spec.action_format,
        instruction=spec.instruction,
        config={str(k): str(v) for k, v in spec.config.items()},
        action_dim=spec.action_dim,
        camera_names=list(spec.camera_names),
        numeric_actions=spec.numeric_actions,
        action_low=list(spec.action_low),
        action_high=list(spec.action_high),
        clip_actions=spec.clip_actions,
    )


def jsonable(value: Any) -> Any:
    """Info values as JSON types (a Struct holds null, bool, number, string, list, dict)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return float(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    return str(value)


def observation_to_proto(out: StepOutput, camera_names: Iterable[str] = ()) -> tuple[env_pb2.Observation, int, int]:
    """(Observation, raw image bytes, image bytes on the wire)."""
    names = list(camera_names)
    obs = env_pb2.Observation(
        text=out.text,
        reward=float(out.reward),
        terminated=bool(out.terminated),
        truncated=bool(out.truncated),
        success=bool(out.success),
        step=int(out.step),
        layout_key=out.layout_key,
    )
    raw = wire = 0
    for i, image in enumerate(out.images):
        t = codec.encode(image, name=names[i] if i < len(names) else f"camera{i}")
        raw += int(np.asarray(image).nbytes)
        wire += len(t.data)
        obs.images.append(t)
    if out.info:
        obs.info.update(jsonable(out.info))
    if out.agent is not None:
        obs.agent.row, obs.agent.col = int(out.agent[0]), int(out.agent[1])
    for e in out.entities:
        obs.entities.add(
            kind=e.kind,
            cell=env_pb2.GridCoord(row=int(e.cell[0]), col=int(e.cell[1])),
            position=[float(p) for p in e.position],
            name=e.name,
        )
    return obs, raw, wire


# --- wire-format splicing -------------------------------------------------------------

def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _uint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value) if value else b""


def _status(code: int, message: str) -> bytes:
    if not code:
        return b""
    return _field(2, _uint(1, code) + (_field(2, message.encode()) if message else b""))


class RawMessage(bytes):
    """Pre-serialized response bytes that the RPC layer sends as they are."""

    def SerializeToString(self) -> bytes:  # protobuf's method name
        return bytes(self)


def step_response(request_id: int, results: Iterable[tuple[int, int, str, bytes, bytes | None]]) -> RawMessage:
    """EnvResponse{request_id, step: StepResponse{results}} from (handle, code, message, observation bytes,
    the automatic reset's observation bytes or None)."""
    body = b"".join(
        _field(1, _uint(1, handle) + _status(code, message) + (_field(3, obs) if not code else b"")
               + (_field(4, reset) if reset is not None and not code else b""))
        for handle, code, message, obs, reset in results
    )
    return RawMessage(_uint(1, request_id) + _field(5, body))


def reset_response(request_id: int, observation: bytes) -> RawMessage:
    """EnvResponse{request_id, reset: ResetResponse{observation}}."""
    return RawMessage(_uint(1, request_id) + _field(4, _field(1, observation)))
