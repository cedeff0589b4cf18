"""Wire format of the WeightService streams: chunking a version into WeightUpdate messages and reassembling it.

    enc = encode_frames(version, [TensorBlob(name, dtype, shape, raw_bytes), ...], chunk_bytes=4 * MiB)
    enc.manifest, enc.frames                  # begin, parts, end: serialized WeightUpdate messages, built once
    asm = VersionAssembler(expected)          # name -> (shape, dtype); None = accept any tensor
    for f in enc.frames: wv = asm.feed(f)     # a WeightVersion once its ``end`` arrived and every check passed

    delta = encode_delta(enc, base_enc)       # element-wise difference from the previous version + zstd-1

The learner (its publisher and WeightService.Publish) and every subscriber (atlasrl/clients/weights.py) import
this one module, so what is sent is exactly what is decoded. A version is accepted only after its ``end``
message and verification of every tensor: index in range, parts contiguous, byte count, CRC-32, and, with
``expected``, name and shape. A delta (``WeightManifest.is_delta``) is accepted only against the exact base
version it names, and its CRC-32 is that of the rebuilt tensor, so a wrong or damaged base is caught too.

Copies. A part's frame is written by hand (``part_frame``: a few header bytes, then the tensor's bytes, one
copy) instead of going through protobuf, which copied the data three times (slice, message, serialization).
The subscriber takes frames as raw bytes (``feed(bytes)``) and parses a part's header itself: its data is a
memoryview of the received bytes copied once, into the tensor's preallocated buffer. CRC-32 runs on buffers
(zlib on a memoryview, no copy). Other messages (begin, end, collective) go through protobuf.
Importable without grpc servers or torch.
"""
from __future__ import annotations

import math
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atlasrl import codec, weight_diff
from atlasrl.protowire import read_varint, varint
from atlasrl.v1 import weights_pb2

MiB = 1 << 20
RAW = weights_pb2.TENSOR_ENCODING_RAW
DIFF_ZSTD = weights_pb2.TENSOR_ENCODING_DIFF_ZSTD
DELTA_ZSTD_LEVEL = 1


class WeightStreamError(ValueError):
    """A version's messages were inconsistent or a tensor failed verification."""


class DeltaBaseError(WeightStreamError):
    """A delta arrived for a base version the subscriber does not hold (it missed one): resync with a full version."""


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

    @property
    def view(self) -> memoryview:
        """The bytes as a flat memoryview (no copy)."""
        return memoryview(self.data).cast("B")

    @property
    def nbytes(self) -> int:
        return self.view.nbytes


# ---------------------------------------------------------------- protobuf wire helpers (parts only)
def part_frame(version: int, index: int, offset: int, data: memoryview) -> bytes:
    """The serialized ``WeightUpdate{version, part{index, offset, data}}``: header bytes, then ``data`` (one copy)."""
    inner = b"\x08" + varint(index) + b"\x10" + varint(offset) + b"\x1a" + varint(len(data))
    head = b"\x08" + varint(version & 0xFFFFFFFFFFFFFFFF) + b"\x1a" + varint(len(inner) + len(data)) + inner
    return b"".join((head, data))


@dataclass
class RawPart:
    """A part parsed from its frame without protobuf: ``data`` is a view of the received bytes."""

    version: int
    index: int
    offset: int
    data: memoryview


def parse_frame(raw: bytes) -> weights_pb2.WeightUpdate | RawPart:
    """A received frame: parts as RawPart (zero-copy), everything else (or any unusual layout) through protobuf."""
    view = memoryview(raw)
    try:
        part = _parse_part(view)
    except IndexError:
        part = None
    if part is not None:
        return part
    try:
        return weights_pb2.WeightUpdate.FromString(raw)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends: all mean a bad frame
        raise WeightStreamError(f"unparseable WeightUpdate ({len(raw)} bytes): {e}") from None


def _parse_part(v: memoryview) -> RawPart | None:
    """The layout part_frame writes (fields in order, each once); None for anything else."""
    pos, version = 0, 0
    if len(v) and v[0] == 0x08:
        version, pos = read_varint(v, 1)
        if version >= 1 << 63:
            version -= 1 << 64
    if pos >= len(v) or v[pos] != 0x1A:
        return None
    n, pos = read_varint(v, pos + 1)
    if pos + n != len(v):
        return None
    index = offset = 0
    if v[pos] == 0x08:
        index, pos = read_varint(v, pos + 1)
    if pos < len(v) and v[pos] == 0x10:
        offset, pos = read_varint(v, pos + 1)
    if pos >= len(v) or v[pos] != 0x1A:
        return None
    m, pos = read_varint(v, pos + 1)
    if pos + m != len(v):
        return None
    return RawPart(version, index, offset, v[pos:])


# ---------------------------------------------------------------- encoding
@dataclass
class EncodedVersion:
    """One version's messages, serialized once (the same bytes go to every subscriber)."""

    manifest: weights_pb2.WeightManifest
    frames: list[bytes]
    chunks: list[list[memoryview]] = field(default_factory=list)
    """Per tensor, its parts' payloads: views into ``frames`` (a delta against this version reads them)."""

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def wire_bytes(self) -> int:
        return sum(len(f) for f in self.frames)


def _check_chunk(chunk_bytes: int) -> None:
    if not (MiB <= chunk_bytes <= 4 * MiB):
        raise ValueError(f"chunk_bytes {chunk_bytes} outside 1-4 MiB")


def crc32(data: Any) -> int:
    """zlib CRC-32 of a bytes-like object (memoryview, numpy array, bytearray), without copying it."""
    return zlib.crc32(data) if isinstance(data, bytes | bytearray) else zlib.crc32(memoryview(data).cast("B"))


def manifest_of(version: int, blobs: Sequence[TensorBlob]) -> weights_pb2.WeightManifest:
    metas, total = [], 0
    for b in blobs:
        n = b.nbytes
        metas.append(weights_pb2.TensorMeta(name=b.name, dtype=b.dtype, shape=b.shape, nbytes=n, crc32=zlib.crc32(b.view),  # type: ignore[arg-type]  # an int is a valid enum value; the generated stubs ask for DType
                                            encoding=RAW, wire_nbytes=n))
        total += n
    return weights_pb2.WeightManifest(version=version, tensors=metas, total_bytes=total)


def _frames(manifest: weights_pb2.WeightManifest, payloads: Sequence[memoryview], chunk_bytes: int) -> EncodedVersion:
    v = manifest.version
    frames = [weights_pb2.WeightUpdate(version=v, begin=manifest).SerializeToString()]
    chunks: list[list[memoryview]] = []
    for i, view in enumerate(payloads):
        mine = []
        for off in range(0, max(len(view), 1), chunk_bytes):
            data = view[off : off + chunk_bytes]
            f = part_frame(v, i, off, data)
            frames.append(f)
            mine.append(memoryview(f)[len(f) - len(data):])
        chunks.append(mine)
    frames.append(weights_pb2.WeightUpdate(version=v, end=weights_pb2.VersionEnd(num_tensors=len(payloads))).SerializeToString())
    return EncodedVersion(manifest, frames, chunks)


def encode_frames(version: int, blobs: Sequence[TensorBlob], chunk_bytes: int = 4 * MiB) -> EncodedVersion:
    """begin, parts of at most ``chunk_bytes``, end: one full version, serialized. Each byte is copied once
    (into its frame); the CRC-32 reads the tensor in place."""
    _check_chunk(chunk_bytes)
    return _frames(manifest_of(version, blobs), [b.view for b in blobs], chunk_bytes)


def encode_version(version: int, blobs: Sequence[TensorBlob], chunk_bytes: int = MiB) -> list[weights_pb2.WeightUpdate]:
    """begin, parts of at most ``chunk_bytes``, end: the messages of one version as protobuf objects
    (for WeightService.Publish and tests; the learner itself publishes ``encode_frames``' bytes)."""
    return [weights_pb2.WeightUpdate.FromString(f) for f in encode_frames(version, blobs, chunk_bytes).frames]


def _tensor_diff(chunks: Sequence[memoryview], base_chunks: Sequence[memoryview], itemsize: int) -> np.ndarray:
    """zigzag(new - base) over a tensor's parts (weight_diff.py), read in place where parts hold whole elements."""
    u = weight_diff.UINT[itemsize]
    if any(len(c) % itemsize for c in chunks[:-1]):      # a chunk size that splits elements: join (a copy)
        chunks, base_chunks = [memoryview(b"".join(chunks))], [memoryview(b"".join(base_chunks))]
    z = np.empty(sum(len(c) for c in chunks) // itemsize, u)
    at = 0
    for nc, bc in zip(chunks, base_chunks):
        a, b = np.frombuffer(nc, u), np.frombuffer(bc, u)
        z[at : at + a.size] = weight_diff.zigzag_diff(a, b)
        at += a.size
    return z


def encode_delta(new: EncodedVersion, base: EncodedVersion, chunk_bytes: int = 4 * MiB) -> EncodedVersion | None:
    """``new`` as its element-wise difference from ``base`` (weight_diff.py) + zstd-1, one zstd frame per tensor;
    None when the two versions do not line up (other tensors, shapes or chunking: send the full version). Reads
    both versions' frames in place. The manifest keeps the full bytes' CRC-32, which the subscriber checks after
    rebuilding."""
    import zstandard

    _check_chunk(chunk_bytes)
    a, b = new.manifest, base.manifest
    if len(a.tensors) != len(b.tensors) or any(
            (x.name, x.dtype, list(x.shape)) != (y.name, y.dtype, list(y.shape)) for x, y in zip(a.tensors, b.tensors)):
        return None
    if [[len(c) for c in t] for t in new.chunks] != [[len(c) for c in t] for t in base.chunks]:
        return None
    cctx = zstandard.ZstdCompressor(level=DELTA_ZSTD_LEVEL)
    metas, payloads = [], []
    for meta, new_chunks, base_chunks in zip(a.tensors, new.chunks, base.chunks):
        pieces = weight_diff.pack(_tensor_diff(new_chunks, base_chunks, codec.itemsize(meta.dtype)))
        z = cctx.compressobj(size=sum(p.nbytes for p in pieces))
        blob = b"".join([z.compress(p) for p in pieces] + [z.flush()])  # type: ignore[arg-type]  # a memoryview is a buffer
        m = weights_pb2.TensorMeta()
        m.CopyFrom(meta)
        m.encoding, m.wire_nbytes = DIFF_ZSTD, len(blob)
        metas.append(m)
        payloads.append(memoryview(blob))
    manifest = weights_pb2.WeightManifest(version=a.version, tensors=metas, total_bytes=a.total_bytes,
                                          is_delta=True, base_version=b.version)
    return _frames(manifest, payloads, chunk_bytes)


# ---------------------------------------------------------------- decoding
@dataclass
class WeightVersion:
    version: int
    manifest: weights_pb2.WeightManifest
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    lineage_reset: bool = False
    """The learner's versions went back (it restarted without its checkpoints): take this one although it is
    not newer than what the subscriber held."""
    transport: str = "stream"
    """How its bytes came: stream, delta (rebuilt from a delta) or collective."""
    wire_bytes: int = 0
    """Bytes its tensors took on the wire (compressed size for a delta)."""
    assembly_s: float = 0.0
    """Seconds spent after the last byte arrived: delta rebuild (zstd, difference added to the base) and the CRC-32 checks."""

    def to_torch(self) -> list[tuple[str, object]]:
        """[(name, torch.Tensor)] in manifest order, sharing memory with ``tensors``."""
        import torch

        out: list[tuple[str, object]] = []
        for name, arr in self.tensors.items():
            t = torch.from_numpy(arr.view(np.uint16)).view(torch.bfloat16) if arr.dtype.name == "bfloat16" else torch.from_numpy(arr)
            out.append((name, t))
        return out


class VersionAssembler:
    """Feeds WeightUpdate messages (protobuf objects or raw frames); returns a verified WeightVersion at each ``end``.

    ``base``: the version held (a delta must name it as its base). A version announced with a CollectiveRound
    sets ``pending_round``: its bytes come over the weight group, and the caller hands them over with
    ``fill_collective`` before the ``end`` (atlasrl/clients/weights.py does, from a worker thread)."""

    def __init__(self, expected: dict[str, tuple[Sequence[int], object]] | None = None, max_total_bytes: int = 64 << 30,
                 base: WeightVersion | None = None):
        self.expected = expected
        self.max_total_bytes = max_total_bytes
        self.base = base
        self._reset()

    def _reset(self) -> None:
        self._manifest: weights_pb2.WeightManifest | None = None
        self._bufs: list[Any] = []
        self._filled: list[int] = []
        self._via = "stream"
        self.pending_round: weights_pb2.CollectiveRound | None = None

    @property
    def manifest(self) -> weights_pb2.WeightManifest | None:
        """The manifest of the version being received."""
        return self._manifest

    def feed(self, msg: weights_pb2.WeightUpdate | RawPart | bytes) -> WeightVersion | None:
        if isinstance(msg, bytes | bytearray | memoryview):
            msg = parse_frame(bytes(msg) if not isinstance(msg, bytes) else msg)
        if isinstance(msg, RawPart):
            self._in_transfer("part", msg.version)
            self._part(msg.index, msg.offset, msg.data)
            return None
        kind = msg.WhichOneof("kind")
        if kind == "begin":
            self._begin(msg.begin, msg.version)
            return None
        self._in_transfer(kind, msg.version)
        if kind == "part":
            self._part(msg.part.index, msg.part.offset, memoryview(msg.part.data))
            return None
        if kind == "collective":
            self._collective(msg.collective)
            return None
        if kind == "end":
            return self._end(msg.end)
        raise WeightStreamError("WeightUpdate without begin/part/end")

    def _in_transfer(self, kind: str | None, version: int) -> None:
        m = self._manifest
        if m is None:
            raise WeightStreamError(f"'{kind}' of version {version} arrived before its 'begin'")
        if version != m.version:
            raise WeightStreamError(f"message of version {version} inside the transfer of version {m.version}")

    def _begin(self, m: weights_pb2.WeightManifest, version: int) -> None:
        self._reset()
        if m.version != version:
            raise WeightStreamError(f"manifest version {m.version} != message version {version}")
        if m.is_delta:
            held = -1 if self.base is None else self.base.version
            if held != m.base_version:
                raise DeltaBaseError(f"delta of version {version} against version {m.base_version}, but version {held} is held")
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
            if t.encoding == DIFF_ZSTD:
                if not m.is_delta:
                    raise WeightStreamError(f"tensor {t.name!r} is DIFF_ZSTD in a version that is not a delta")
                base = self.base.tensors.get(t.name) if self.base is not None else None
                if base is None or base.nbytes != t.nbytes:
                    raise DeltaBaseError(f"delta tensor {t.name!r} has no base of {t.nbytes} bytes in version {m.base_version}")
                raw = weight_diff.max_payload_nbytes(t.nbytes, codec.itemsize(t.dtype))
                if t.wire_nbytes > raw + (raw >> 7) + 1024:   # zstd's worst-case bound, roughly
                    raise WeightStreamError(f"delta tensor {t.name!r}: {t.wire_nbytes} wire bytes for {t.nbytes}")
            elif t.encoding != RAW:   # XOR_ZSTD (retired) included
                raise WeightStreamError(f"tensor {t.name!r}: unsupported encoding {t.encoding}")
            elif t.wire_nbytes not in (0, t.nbytes):   # 0: senders older than the field
                raise WeightStreamError(f"tensor {t.name!r}: wire_nbytes {t.wire_nbytes} != nbytes {t.nbytes}")
            self._check_expected(t)
            total += t.nbytes
        if total != m.total_bytes or total > self.max_total_bytes:
            raise WeightStreamError(f"version {version}: total_bytes {m.total_bytes} (sum {total}, limit {self.max_total_bytes})")
        self._manifest = m
        # filled in place: no regrowth copies
        self._bufs = [bytearray(_wire_nbytes(t)) for t in m.tensors]
        self._filled = [0] * len(m.tensors)

    def _check_expected(self, t: weights_pb2.TensorMeta) -> None:
        if self.expected is None:
            return
        if t.name not in self.expected:
            raise WeightStreamError(f"tensor {t.name!r} is not a parameter of the local model")
        shape, _ = self.expected[t.name]
        if tuple(shape) != tuple(t.shape):
            raise WeightStreamError(f"tensor {t.name!r}: shape {list(t.shape)} but the local model has {list(shape)}")

    def _part(self, index: int, offset: int, data: memoryview) -> None:
        m = self._manifest
        assert m is not None  # feed() checked
        if self._via == "collective":
            raise WeightStreamError(f"part inside the collective transfer of version {m.version}")
        if index >= len(m.tensors):
            raise WeightStreamError(f"part for tensor index {index}; the manifest has {len(m.tensors)} tensors")
        meta, filled = m.tensors[index], self._filled[index]
        if offset != filled:
            raise WeightStreamError(f"tensor {meta.name!r}: part at offset {offset}, expected {filled}")
        end = filled + len(data)
        if end > len(self._bufs[index]):
            raise WeightStreamError(f"tensor {meta.name!r}: parts exceed its {len(self._bufs[index])} wire bytes")
        self._bufs[index][filled:end] = data
        self._filled[index] = end

    def _collective(self, rnd: weights_pb2.CollectiveRound) -> None:
        m = self._manifest
        assert m is not None  # feed() checked
        if m.is_delta or any(self._filled) or self._via == "collective":
            raise WeightStreamError(f"collective round inside a streamed, delta or collective transfer of version {m.version}")
        self.pending_round = rnd
        self._via = "collective"

    def fill_collective(self, bufs: Sequence[Any]) -> None:
        """The bytes of the pending round, one buffer per tensor in manifest order (checked at ``end``)."""
        m = self._manifest
        if m is None or self.pending_round is None:
            raise WeightStreamError("collective bytes without a pending round")
        if len(bufs) != len(m.tensors):
            raise WeightStreamError(f"collective gave {len(bufs)} tensors for {len(m.tensors)}")
        self._bufs = list(bufs)
        self._filled = [memoryview(b).nbytes for b in bufs]
        self.pending_round = None

    def _end(self, end: weights_pb2.VersionEnd) -> WeightVersion:
        m = self._manifest
        assert m is not None  # feed() checked
        if end.num_tensors != len(m.tensors):
            raise WeightStreamError(f"end says {end.num_tensors} tensors; manifest has {len(m.tensors)}")
        if self.pending_round is not None:
            raise WeightStreamError(f"end of version {m.version} before its collective bytes arrived")
        via = "delta" if m.is_delta else self._via
        out = WeightVersion(m.version, m, transport=via, wire_bytes=sum(self._filled))
        t0 = time.perf_counter()
        dctx = None
        for meta, buf, filled in zip(m.tensors, self._bufs, self._filled):
            if filled != _wire_nbytes(meta):
                raise WeightStreamError(f"tensor {meta.name!r}: got {filled} of {_wire_nbytes(meta)} bytes")
            if meta.encoding == DIFF_ZSTD:
                if dctx is None:
                    import zstandard

                    dctx = zstandard.ZstdDecompressor()
                buf = self._undelta(dctx, meta, buf)
            crc = crc32(buf)
            if crc != meta.crc32:
                raise WeightStreamError(f"tensor {meta.name!r}: CRC-32 {crc:#010x} != {meta.crc32:#010x}")
            out.tensors[meta.name] = np.frombuffer(buf, dtype=codec.numpy_dtype(meta.dtype)).reshape(tuple(meta.shape))
        self._reset()
        out.assembly_s = time.perf_counter() - t0
        return out

    def _undelta(self, dctx, meta: weights_pb2.TensorMeta, buf) -> np.ndarray:
        assert self.base is not None  # _begin checked
        w = codec.itemsize(meta.dtype)
        try:
            x = dctx.decompress(bytes(buf), max_output_size=weight_diff.max_payload_nbytes(meta.nbytes, w))
        except Exception as e:  # noqa: BLE001 - zstd's ZstdError and size errors: a corrupt delta
            raise WeightStreamError(f"delta tensor {meta.name!r}: {e}") from None
        base = np.ascontiguousarray(self.base.tensors[meta.name]).reshape(-1).view(weight_diff.UINT[w])
        try:
            return weight_diff.unpack(x, base).view(np.uint8)
        except weight_diff.DiffPayloadError as e:
            raise WeightStreamError(f"delta tensor {meta.name!r}: {e}") from None


def _wire_nbytes(t: weights_pb2.TensorMeta) -> int:
    return t.wire_nbytes if t.encoding == DIFF_ZSTD else t.nbytes


def expected_from_named(named: Iterable[tuple[str, Sequence[int]]]) -> dict[str, tuple[Sequence[int], object]]:
    """``expected`` for WeightSubscriber from (name, shape) pairs of the local model."""
    return {name: (tuple(shape), None) for name, shape in named}
