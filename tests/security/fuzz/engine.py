"""Hostile request bytes for any protobuf input type, and the checks every reply must pass.

Payload kinds (all derived from the method's input descriptor, so new RPCs are covered):
random bytes, valid messages, truncated and mutated valid messages, extreme field
values (int limits, NaN/inf, 100k-char strings, a 10^6-element repeated field),
deep nesting, and codec lies in every Tensor (byte count vs shape, negative and
huge shapes, unknown dtype/codec, zstd bombs). Used by tests/security/fuzz and bench/fuzz.py.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import grpc
import numpy as np
import zstandard
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor as F
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atlasrl import codec
from atlasrl.protowire import varint

KINDS = ("random", "valid", "truncated", "mutated", "extreme", "deep", "codec_lie")
TENSOR = "atlasrl.v1.Tensor"
STATUS = "atlasrl.v1.Status"
INT_LIMITS = {F.TYPE_INT32: (-2**31, 2**31 - 1), F.TYPE_SINT32: (-2**31, 2**31 - 1), F.TYPE_SFIXED32: (-2**31, 2**31 - 1),
              F.TYPE_INT64: (-2**63, 2**63 - 1), F.TYPE_SINT64: (-2**63, 2**63 - 1), F.TYPE_SFIXED64: (-2**63, 2**63 - 1),
              F.TYPE_UINT32: (0, 2**32 - 1), F.TYPE_FIXED32: (0, 2**32 - 1), F.TYPE_UINT64: (0, 2**64 - 1),
              F.TYPE_FIXED64: (0, 2**64 - 1)}
_BOMB: dict[str, bytes] = {}


def zstd_bomb() -> bytes:
    """A ~10 kB zstd frame that decodes to 1 GiB of zeros (made once)."""
    if "b" not in _BOMB:
        c = zstandard.ZstdCompressor(level=3)
        chunk = bytes(1 << 20)
        w = c.compressobj()
        _BOMB["b"] = b"".join([w.compress(chunk) for _ in range(1024)] + [w.flush()])
    return _BOMB["b"]


def _scalar(f, r: random.Random, extreme: bool):
    t = f.type
    if t in INT_LIMITS:
        lo, hi = INT_LIMITS[t]
        return r.choice([lo, hi, 0, -1 if lo < 0 else 1, hi // 2]) if extreme else r.randint(max(lo, -5), min(hi, 50))
    if t in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
        return r.choice([math.nan, math.inf, -math.inf, 3e38, -0.0]) if extreme else r.uniform(-10, 10)
    if t == F.TYPE_BOOL:
        return r.random() < 0.5
    if t == F.TYPE_STRING:
        return r.choice(["x" * 100_000, "\u202e\x00\ud7ff" * 100, "../../etc/passwd", ""]) if extreme else r.choice(
            ["", "a", "frozenlake", "sokoban-6x6", "FrozenLake-4x4", "actor-0", "x" * r.randint(0, 40)])
    if t == F.TYPE_BYTES:
        return r.randbytes(r.choice([0, 1, 4096, 200_000])) if extreme else r.randbytes(r.randint(0, 64))
    if t == F.TYPE_ENUM:
        values = [v.number for v in f.enum_type.values]
        return r.choice(values + [999_999, -7]) if extreme else r.choice(values)
    raise TypeError(t)


def _tensor(msg, r: random.Random, lie: bool) -> None:
    dtype = r.choice([np.uint8, np.float32, np.int64, np.float16])
    arr = (np.arange(r.randint(0, 24)) % 7).astype(dtype).reshape(-1)
    msg.CopyFrom(codec.encode(arr, compress=r.random() < 0.5))
    if not lie:
        return
    how = r.randrange(7)
    if how == 0:
        msg.data = msg.data[: max(0, len(msg.data) - 1)] + (b"" if r.random() < 0.5 else b"\0\0\0")
    elif how == 1:
        del msg.shape[:]
        msg.shape.extend([-1, 4])
    elif how == 2:
        del msg.shape[:]
        msg.shape.extend([1 << 31, 1 << 31, 1 << 20])
    elif how == 3:
        msg.dtype, msg.codec = 999, 77
    elif how == 4:   # zstd bomb whose shape is honest: decoded size far above every cap
        msg.dtype, msg.codec, msg.data = 1, 2, zstd_bomb()
        del msg.shape[:]
        msg.shape.append(1 << 30)
    elif how == 5:   # zstd bomb behind a tiny shape
        msg.dtype, msg.codec, msg.data = 1, 2, zstd_bomb()
        del msg.shape[:]
        msg.shape.append(4)
    else:
        del msg.shape[:]
        msg.shape.extend([1] * 64)


def fill(msg, r: random.Random, *, extreme=False, lie=False, depth=0, budget=None) -> None:
    """Set a random subset of ``msg``'s fields (recursively)."""
    budget = budget if budget is not None else {"big": 1}
    if msg.DESCRIPTOR.full_name == TENSOR:
        _tensor(msg, r, lie)
        return
    for f in msg.DESCRIPTOR.fields:
        if r.random() < 0.4:
            continue
        if f.type == F.TYPE_MESSAGE:
            if f.message_type.GetOptions().map_entry:
                kf, vf = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
                if vf.type != F.TYPE_MESSAGE:
                    m = getattr(msg, f.name)
                    for _ in range(r.randint(0, 3)):
                        m[_scalar(kf, r, False)] = _scalar(vf, r, extreme)
                continue
            if depth > 6:
                continue
            if f.is_repeated:
                for _ in range(r.randint(0, 3)):
                    fill(getattr(msg, f.name).add(), r, extreme=extreme, lie=lie, depth=depth + 1, budget=budget)
            else:
                fill(getattr(msg, f.name), r, extreme=extreme, lie=lie, depth=depth + 1, budget=budget)
                getattr(msg, f.name).SetInParent()
            continue
        if f.is_repeated:
            if extreme and budget["big"] and f.type not in (F.TYPE_STRING, F.TYPE_BYTES):
                budget["big"] -= 1
                getattr(msg, f.name).extend([_scalar(f, r, True)] * 1_000_000)
            else:
                getattr(msg, f.name).extend(_scalar(f, r, extreme) for _ in range(r.randint(0, 4)))
        else:
            try:
                setattr(msg, f.name, _scalar(f, r, extreme))
            except ValueError:   # e.g. an out-of-range enum on a closed enum
                pass


def _deep(r: random.Random, levels: int) -> bytes:
    b = b""
    for _ in range(levels):
        b = b"\x0a" + varint(len(b)) + b
    return b


def payload(input_desc, kind: str, seed: int, raw: bytes) -> bytes:
    """Request bytes of ``kind`` for the message type ``input_desc``."""
    r = random.Random(seed)
    if kind == "random":
        return raw
    if kind == "deep":
        return _deep(r, r.choice([50, 101, 1000, 20_000]))
    msg = message_factory.GetMessageClass(input_desc)()
    fill(msg, r, extreme=kind == "extreme", lie=kind == "codec_lie")
    data = msg.SerializeToString()
    if kind == "truncated":
        return data[: r.randint(0, max(0, len(data) - 1))]
    if kind == "mutated":
        b = bytearray(data or b"\x00")
        for _ in range(r.randint(1, 8)):
            i = r.randrange(len(b))
            op = r.randrange(3)
            if op == 0:
                b[i] = r.randrange(256)
            elif op == 1:
                b[i:i] = r.randbytes(r.randint(1, 8))
            elif len(b) > 1:
                del b[i]
        return bytes(b)
    return data


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str
    statuses: list = field(default_factory=list)   # per-request atlasrl.v1.Status codes/messages in responses


def _statuses(resp) -> list:
    out = []
    for f in resp.DESCRIPTOR.fields:
        if f.type == F.TYPE_MESSAGE and f.message_type.full_name == STATUS and not f.is_repeated and resp.HasField(f.name):
            st = getattr(resp, f.name)
            out.append((st.code, st.message))
    return out


def call(channel, md, data: bytes, timeout: float = 10.0) -> Outcome:
    """Send ``data`` as the request (or the one stream message) of method ``md``; collect the outcome."""
    path = f"/{md.containing_service.full_name}/{md.name}"
    out_cls = message_factory.GetMessageClass(md.output_type)
    statuses: list = []
    try:
        if not md.client_streaming and not md.server_streaming:
            statuses += _statuses(channel.unary_unary(path, None, out_cls.FromString)(data, timeout=timeout))
        elif not md.client_streaming:   # long-lived (Watch, Subscribe): silence until the deadline is allowed
            it = channel.unary_stream(path, None, out_cls.FromString)(data, timeout=min(timeout, 1.0))
            try:
                statuses += _statuses(next(it))   # long-lived streams: the first answer is enough
            except StopIteration:
                pass
            it.cancel()
        elif not md.server_streaming:
            statuses += _statuses(channel.stream_unary(path, None, out_cls.FromString)(iter([data]), timeout=timeout))
        else:
            for resp in channel.stream_stream(path, None, out_cls.FromString)(iter([data]), timeout=timeout):
                statuses += _statuses(resp)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.CANCELLED and md.server_streaming and not md.client_streaming:
            return Outcome(grpc.StatusCode.OK, "", statuses)
        return Outcome(e.code(), e.details() or "", statuses)
    return Outcome(grpc.StatusCode.OK, "", statuses)


def problems(md, out: Outcome) -> list[str]:
    """What is wrong with an outcome (empty = fine)."""
    bad = []
    long_poll = md.server_streaming and not md.client_streaming
    if out.code == grpc.StatusCode.DEADLINE_EXCEEDED and not long_poll:
        bad.append("no answer before the deadline (hang)")
    if out.code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        bad.append(f"{out.code.name}: {out.details[:300]}")
    if out.code != grpc.StatusCode.OK and not out.details:
        bad.append(f"{out.code.name} without a message")
    if "Traceback" in out.details:
        bad.append("traceback in status details")
    for code, message in out.statuses:
        if code in (grpc.StatusCode.INTERNAL.value[0], grpc.StatusCode.UNKNOWN.value[0]):
            bad.append(f"per-request status {code}: {message[:300]}")
        elif code and not message:
            bad.append(f"per-request status {code} without a message")
    return bad


def healthy(channel, service: str) -> bool:
    resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return resp.status == health_pb2.HealthCheckResponse.SERVING
