"""Env outputs <-> atlasrl.v1 protobuf, and splicing of pre-serialized observations.

Workers serialize each ``Observation`` once (render, zstd-1, fields written by hand) and hand the
bytes to the event loop, which splices them into the response with the
length-delimited wire format instead of parsing and re-serializing them.
"""
from __future__ import annotations

import functools
import math
import struct
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
    """(Observation, raw image bytes, image bytes on the wire), for in-process users (tests, benches)."""
    data, raw, wire = observation_bytes(out, camera_names)
    return env_pb2.Observation.FromString(data), raw, wire


def observation_bytes(out: StepOutput, camera_names: Iterable[str] = (), frames: FrameCache | None = None) -> tuple[bytes, int, int]:
    """(serialized Observation, raw image bytes, image bytes on the wire), written field by field.

    What the env server does for every step, so it skips protobuf's message objects: building the Observation,
    its Struct and its Entities and serializing them cost ~20 us a step (FrozenLake 4x4), this ~6, plus zstd
    unless ``frames`` holds the image already. The bytes parse to exactly the message protobuf builds (tests/envserver/test_observation_wire.py).
    Tags are precomputed: every field number here is below 16, so a tag is one byte."""
    names = list(camera_names)
    parts = []
    raw = wire = 0
    keys = out.image_keys
    for i, image in enumerate(out.images):
        key = keys[i] if i < len(keys) else None
        dtype, shape, codec_id, data, nbytes = frames.pack(image, key) if frames is not None else codec.pack(image)
        name = (names[i] if i < len(names) else f"camera{i}").encode()
        dims = b"".join(varint(d) for d in shape)
        tensor = b"".join((b"\x08", varint(dtype), _ld(b"\x12", dims) if dims else b"", b"\x18", varint(codec_id),
                           _ld(b"\x22", data), _ld(b"\x2a", name) if name else b""))
        parts.append(_ld(b"\x0a", tensor))
        raw += nbytes
        wire += len(data)
    if out.text:
        parts.append(_ld(b"\x12", out.text.encode()))
    reward = float(out.reward)
    if reward or math.copysign(1.0, reward) < 0:  # proto3 omits exactly +0.0
        parts.append(b"\x19" + _f64(reward))
    if out.terminated:
        parts.append(b"\x20\x01")
    if out.truncated:
        parts.append(b"\x28\x01")
    if out.success:
        parts.append(b"\x30\x01")
    if out.info:
        parts.append(_ld(b"\x3a", _struct(out.info)))
    if out.agent is not None:
        parts.append(_ld(b"\x42", _coord(out.agent)))
    for e in out.entities:
        parts.append(_entity(e.kind, tuple(e.cell), b"".join(_f32(float(p)) for p in e.position) if e.position else b"", e.name))
    step = int(out.step)
    if step:
        if not 0 < step < 1 << 32:
            raise ValueError(f"step {step} is out of uint32 range")
        parts.append(b"\x50" + varint(step))
    if out.layout_key:
        parts.append(_ld(b"\x5a", out.layout_key.encode()))
    return b"".join(parts), raw, wire


class FrameCache:
    """Encoded images by content key (``StepOutput.image_keys``), so a frame seen before skips zstd: ~23 us of the
    server's ~120 us per FrozenLake 4x4 step at 128 px. Grid frames repeat a lot: a GRPO group replays one map,
    and play revisits cells (82 % of frames in bench/env_throughput.py's FrozenLake load had been seen before).

    Bounded in bytes by emptying it when the next frame would not fit, rather than LRU order: one dict get/set
    per frame, safe under the thread pool. A 128 px grid frame is ~4 KB encoded.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes  # 0 = off
        self.bytes = 0
        self._packed: dict[bytes, tuple[int, tuple[int, ...], int, bytes, int]] = {}

    def pack(self, image, key: bytes | None) -> tuple[int, tuple[int, ...], int, bytes, int]:
        """``codec.pack(image)``, from the cache when ``key`` was packed before."""
        if key is None or not self.max_bytes:
            return codec.pack(image)
        packed = self._packed.get(key)
        if packed is None or packed[1] != np.shape(image):  # a shape mismatch means a misused key: encode afresh
            packed = codec.pack(image)
            size = len(key) + len(packed[3])
            if self.bytes + size > self.max_bytes:
                self._packed.clear()
                self.bytes = 0
            if size <= self.max_bytes:
                self._packed[key] = packed
                self.bytes += size
        return packed


_f64 = struct.Struct("<d").pack
_f32 = struct.Struct("<f").pack


def _ld(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field whose one-byte tag is given."""
    return tag + varint(len(payload)) + payload


def _int32(tag: bytes, value: int) -> bytes:
    if not value:
        return b""
    if not -(1 << 31) <= value < 1 << 31:
        raise ValueError(f"{value} is out of int32 range")
    return tag + varint(value & 0xFFFFFFFFFFFFFFFF)  # negatives: ten-byte two's complement, as protobuf writes them


def _coord(cell) -> bytes:
    """GridCoord{row = 1, col = 2}."""
    return _int32(b"\x08", int(cell[0])) + _int32(b"\x10", int(cell[1]))


@functools.lru_cache(maxsize=4096)
def _entity(kind: str, cell: tuple, floats: bytes, name: str) -> bytes:
    """Observation.entities (9) entry; cached, as a map's goal and holes repeat every step of its episode.
    The position comes packed: as a key, (0.0,) would find the entry of (-0.0,)."""
    body = b"".join((_ld(b"\x0a", kind.encode()) if kind else b"", _ld(b"\x12", _coord(cell)),
                     _ld(b"\x1a", floats) if floats else b"", _ld(b"\x22", name.encode()) if name else b""))
    return _ld(b"\x4a", body)


@functools.lru_cache(maxsize=1024)
def _map_key(key: str) -> bytes:
    """A Struct map entry's key field; the keys of a game's info dict are a handful that repeat every step."""
    return _ld(b"\x0a", key.encode()) if key else b""


def _struct(info: dict) -> bytes:
    """google.protobuf.Struct of ``jsonable(info)``: fields (1) = map entries {key = 1, value = 2}."""
    return b"".join(_ld(b"\x0a", _map_key(str(k)) + _ld(b"\x12", _value(v))) for k, v in info.items())


_TRUE, _FALSE, _NULL = b"\x20\x01", b"\x20\x00", b"\x08\x00"


def _value(v: Any) -> bytes:
    """google.protobuf.Value of ``jsonable(v)``: a oneof, so zero values are written too."""
    if v is None:
        return _NULL
    if v is True:
        return _TRUE
    if v is False:
        return _FALSE
    if isinstance(v, str):
        return _ld(b"\x1a", v.encode())
    if isinstance(v, (int, float)):
        f = float(v)
        return b"\x11" + _f64(f) if math.isfinite(f) else _ld(b"\x1a", str(v).encode())
    if isinstance(v, np.generic):
        return _value(v.item())
    if isinstance(v, np.ndarray):
        return _value(v.tolist())
    if isinstance(v, dict):
        return _ld(b"\x2a", _struct(v))
    if isinstance(v, (list, tuple, set)):
        return _ld(b"\x32", b"".join(_ld(b"\x0a", _value(x)) for x in v))
    return _ld(b"\x1a", str(v).encode())


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


def reset_batch_response(request_id: int, results: Iterable[tuple[int, int, str, bytes]]) -> RawMessage:
    """EnvResponse{request_id, reset_batch: ResetBatchResponse{results}} from (handle, code, message, observation
    bytes); a ResetResult's fields are numbered as a StepResult's."""
    body = b"".join(_field(1, _uint(1, handle) + _status(code, message) + (_field(3, obs) if not code else b""))
                    for handle, code, message, obs in results)
    return RawMessage(_uint(1, request_id) + _field(7, body))


def reset_response(request_id: int, observation: bytes) -> RawMessage:
    """EnvResponse{request_id, reset: ResetResponse{observation}}."""
    return RawMessage(_uint(1, request_id) + _field(4, _field(1, observation)))
