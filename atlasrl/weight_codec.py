"""Wire format of the WeightService streams: chunking a version into WeightUpdate messages and reassembling it.

    msgs = encode_version(version, [TensorBlob(name, shape, dtype, raw_bytes), ...], chunk_bytes=MiB)
    asm = VersionAssembler(expected)          # name -> (shape, dtype); None = accept any tensor
    for m in msgs: wv = asm.feed(m)           # a WeightVersion once its ``end`` arrived and every check passed

The learner (its publisher and WeightService.Publish) and every subscriber (atlasrl/clients/weights.py) import
this one module, so what is sent is exactly what is decoded. A version is accepted only after its ``end``
message and verification of every tensor: index in range, parts contiguous, byte count, CRC-32, and, with
``expected``, name and shape. Importable without grpc servers or torch.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from atlasrl import codec
from atlasrl.v1 import weights_pb2

MiB = 1 << 20


class WeightStreamError(ValueError):
    """A version's messages were inconsistent or a tensor failed verification."""


@dataclass
class TensorBlob:
    """One tensor ready to send: raw little-endian bytes in its wire dtype."""

    name: str
    dtype: int            # atlasrl.v1.DType
    shape: tuple[int, ...]
    data: bytes | memoryview

    @classmethod
    def from_numpy(cls, name: str, arr: np.ndarray) -> TensorBlob:
        arr = np.ascontiguousarray(arr)
        return cls(name, codec.wire_dtype(arr.dtype), tuple(arr.shape), memoryview(arr.reshape(-1).view(np.uint8)))  # type: ignore[arg-type]  # numpy declares ndarray.__buffer__ for Python 3.12+ only


def encode_version(version: int, blobs: Sequence[TensorBlob], chunk_bytes: int = MiB) -> list[weights_pb2.WeightUpdate]:
    """begin, parts of at most ``chunk_bytes``, end: the messages of one version."""
    if not (MiB <= chunk_bytes <= 4 * MiB):
        raise ValueError(f"chunk_bytes {chunk_bytes} outside 1-4 MiB")
    metas, total = [], 0
    for b in blobs:
        nbytes = len(b.data) if isinstance(b.data, bytes) else b.data.nbytes
        metas.append(weights_pb2.TensorMeta(name=b.name, dtype=b.dtype, shape=b.shape, nbytes=nbytes, crc32=zlib.crc32(b.data)))  # type: ignore[arg-type]  # an int is a valid enum value; the generated stubs ask for DType
        total += nbytes
    manifest = weights_pb2.WeightManifest(version=version, tensors=metas, total_bytes=total)
    msgs = [weights_pb2.WeightUpdate(version=version, begin=manifest)]
    for i, b in enumerate(blobs):
        view = memoryview(b.data).cast("B")
        for off in range(0, max(len(view), 1), chunk_bytes):
            part = weights_pb2.TensorPart(index=i, offset=off, data=bytes(view[off : off + chunk_bytes]))
            msgs.append(weights_pb2.WeightUpdate(version=version, part=part))
    msgs.append(weights_pb2.WeightUpdate(version=version, end=weights_pb2.VersionEnd(num_tensors=len(blobs))))
    return msgs


@dataclass
class WeightVersion:
    version: int
    manifest: weights_pb2.WeightManifest
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    lineage_reset: bool = False
    """The learner's versions went back (it restarted without its checkpoints): take this one although it is
    not newer than what the subscriber held."""

    def to_torch(self) -> list[tuple[str, object]]:
        """[(name, torch.Tensor)] in manifest order, sharing memory with ``tensors``."""
        import torch

        out: list[tuple[str, object]] = []
        for name, arr in self.tensors.items():
            t = torch.from_numpy(arr.view(np.uint16)).view(torch.bfloat16) if arr.dtype.name == "bfloat16" else torch.from_numpy(arr)
            out.append((name, t))
        return out


class VersionAssembler:
    """Feeds WeightUpdate messages; returns a verified WeightVersion at each ``end``."""

    def __init__(self, expected: dict[str, tuple[Sequence[int], object]] | None = None, max_total_bytes: int = 64 << 30):
        self.expected = expected
        self.max_total_bytes = max_total_bytes
        self._reset()

    def _reset(self) -> None:
        self._manifest: weights_pb2.WeightManifest | None = None
        self._bufs: list[bytearray] = []
        self._filled: list[int] = []

    def feed(self, msg: weights_pb2.WeightUpdate) -> WeightVersion | None:
        kind = msg.WhichOneof("kind")
        if kind == "begin":
            self._begin(msg.begin, msg.version)
            return None
        m = self._manifest
        if m is None:
            raise WeightStreamError(f"'{kind}' of version {msg.version} arrived before its 'begin'")
        if msg.version != m.version:
            raise WeightStreamError(f"message of version {msg.version} inside the transfer of version {m.version}")
        if kind == "part":
            self._part(msg.part)
            return None
        if kind == "end":
            return self._end(msg.end)
        raise WeightStreamError("WeightUpdate without begin/part/end")

    def _begin(self, m: weights_pb2.WeightManifest, version: int) -> None:
        if m.version != version:
            raise WeightStreamError(f"manifest version {m.version} != message version {version}")
        names = set()
        total = 0
        for t in m.tensors:
            if t.name in names:
                raise WeightStreamError(f"tensor {t.name!r} appears twice in version {version}")
            names.add(t.name)
            shape = codec.check_shape(t.shape)
            need = math.prod(shape) * codec.itemsize(t.dtype)
            if need != t.nbytes:
                raise WeightStreamError(f"tensor {t.name!r}: nbytes {t.nbytes} != shape {list(shape)} x itemsize ({need})")
            self._check_expected(t)
            total += t.nbytes
        if total != m.total_bytes or total > self.max_total_bytes:
            raise WeightStreamError(f"version {version}: total_bytes {m.total_bytes} (sum {total}, limit {self.max_total_bytes})")
        self._manifest = m
        self._bufs = [bytearray(t.nbytes) for t in m.tensors]   # filled in place: no regrowth copies
        self._filled = [0] * len(m.tensors)

    def _check_expected(self, t: weights_pb2.TensorMeta) -> None:
        if self.expected is None:
            return
        if t.name not in self.expected:
            raise WeightStreamError(f"tensor {t.name!r} is not a parameter of the local model")
        shape, _ = self.expected[t.name]
        if tuple(shape) != tuple(t.shape):
            raise WeightStreamError(f"tensor {t.name!r}: shape {list(t.shape)} but the local model has {list(shape)}")

    def _part(self, p: weights_pb2.TensorPart) -> None:
        m = self._manifest
        assert m is not None  # feed() checked
        if p.index >= len(m.tensors):
            raise WeightStreamError(f"part for tensor index {p.index}; the manifest has {len(m.tensors)} tensors")
        meta, filled = m.tensors[p.index], self._filled[p.index]
        if p.offset != filled:
            raise WeightStreamError(f"tensor {meta.name!r}: part at offset {p.offset}, expected {filled}")
        end = filled + len(p.data)
        if end > meta.nbytes:
            raise WeightStreamError(f"tensor {meta.name!r}: parts exceed its {meta.nbytes} bytes")
        self._bufs[p.index][filled:end] = p.data
        self._filled[p.index] = end

    def _end(self, end: weights_pb2.VersionEnd) -> WeightVersion:
        m = self._manifest
        assert m is not None  # feed() checked
        if end.num_tensors != len(m.tensors):
            raise WeightStreamError(f"end says {end.num_tensors} tensors; manifest has {len(m.tensors)}")
        out = WeightVersion(m.version, m)
        for meta, buf, filled in zip(m.tensors, self._bufs, self._filled):
            if filled != meta.nbytes:
                raise WeightStreamError(f"tensor {meta.name!r}: got {filled} of {meta.nbytes} bytes")
            crc = zlib.crc32(buf)
            if crc != meta.crc32:
                raise WeightStreamError(f"tensor {meta.name!r}: CRC-32 {crc:#010x} != {meta.crc32:#010x}")
            out.tensors[meta.name] = np.frombuffer(buf, dtype=codec.numpy_dtype(meta.dtype)).reshape(tuple(meta.shape))
        self._reset()
        return out


def expected_from_named(named: Iterable[tuple[str, Sequence[int]]]) -> dict[str, tuple[Sequence[int], object]]:
    """``expected`` for WeightSubscriber from (name, shape) pairs of the local model."""
    return {name: (tuple(shape), None) for name, shape in named}
