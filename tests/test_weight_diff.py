"""The delta transport's element-wise code (atlasrl/weight_diff.py) and its use in weight_codec: exact round trips
for every element width and bit pattern, the documented layout byte for byte, the size after a small bf16 update,
and corrupt or retired payloads refused naming the tensor."""
import ml_dtypes
import numpy as np
import pytest
import zstandard

from atlasrl import weight_diff as wd
from atlasrl.v1 import weights_pb2
from atlasrl.weight_codec import (
    DIFF_ZSTD,
    MiB,
    TensorBlob,
    VersionAssembler,
    WeightStreamError,
    encode_delta,
    encode_frames,
)


def roundtrip(new: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, bytes]:
    payload = b"".join(bytes(p) for p in wd.pack(wd.zigzag_diff(new, base)))
    return wd.unpack(payload, base), payload


@pytest.mark.parametrize("w", [1, 2, 4, 8])
@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 1001])
def test_every_width_and_bit_pattern_round_trips(w, n):
    rng = np.random.default_rng(n * 10 + w)
    u = wd.UINT[w]
    top = np.iinfo(u).max
    base = rng.integers(0, top, n, dtype=u, endpoint=True)
    new = base.copy()
    small = rng.random(n) < 0.5
    new[small] += rng.integers(0, 4, int(small.sum()), dtype=u)          # small steps up
    down = rng.random(n) < 0.2
    new[down] -= rng.integers(0, 4, int(down.sum()), dtype=u)            # and down (wrapping below 0)
    wild = rng.random(n) < 0.1
    new[wild] = rng.integers(0, top, int(wild.sum()), dtype=u, endpoint=True)   # anything: sign flips, NaN, inf
    if n:
        base[0], new[0] = top, 0                                         # the widest wrap there is
    got, payload = roundtrip(new, base)
    assert got.dtype == u and np.array_equal(got, new)
    assert len(payload) <= wd.max_payload_nbytes(n * w, w)


def test_layout_is_the_documented_one():
    base = np.full(5, 10, np.uint16)
    new = np.array([10, 11, 9, 13, 10], np.uint16)      # steps 0, +1, -1, +3, 0
    z = wd.zigzag_diff(new, base)
    assert z.tolist() == [0, 2, 1, 6, 0]
    codes, escapes = (bytes(p) for p in wd.pack(z))
    assert codes == bytes([0 | 2 << 2 | 1 << 4 | 3 << 6, 0])             # min(z, 3), four to a byte, from bit 0
    assert escapes == bytes([6, 0])                                       # the escaped z, low-byte plane first
    with pytest.raises(wd.DiffPayloadError, match="past the last of 5 elements"):   # padding codes are 0
        wd.unpack(bytes([0, 3 << 2, 6, 0]), base)
    base4 = np.zeros(3, np.uint32)
    new4 = np.array([0x10203, 0, 5], np.uint32)
    _, esc = (bytes(p) for p in wd.pack(wd.zigzag_diff(new4, base4)))
    assert esc == bytes([0x06, 0x0A, 0x04, 0x00, 0x02, 0x00, 0x00, 0x00])  # z = 0x20406, 10: one plane per byte


def test_a_small_bf16_update_costs_under_a_tenth_of_the_full_bytes():
    rng = np.random.default_rng(0)
    w = rng.standard_normal(1 << 20, dtype=np.float32) * np.float32(0.02)
    step = np.where(rng.random(w.size) < 0.5, -1e-5, 1e-5).astype(np.float32)   # bench/weight_sync.py's update
    base, new = w.astype(ml_dtypes.bfloat16).view(np.uint16), (w + step).astype(ml_dtypes.bfloat16).view(np.uint16)
    assert 0.2 < (base != new).mean() < 0.3
    blob = zstandard.ZstdCompressor(level=1).compress(b"".join(bytes(p) for p in wd.pack(wd.zigzag_diff(new, base))))
    xor = zstandard.ZstdCompressor(level=1).compress((base ^ new).tobytes())
    assert len(blob) < 0.10 * base.nbytes < len(xor)


def versions():
    rng = np.random.default_rng(3)
    v1 = {"bf16": (rng.standard_normal((300, 7)) * 0.02).astype(ml_dtypes.bfloat16),
          "f32": rng.standard_normal(1000).astype(np.float32),
          "i8": rng.integers(-128, 127, 33, dtype=np.int8),
          "i64": rng.integers(-2**62, 2**62, 5, dtype=np.int64),
          "big": (rng.standard_normal(MiB) * 0.02).astype(ml_dtypes.bfloat16)}   # 2 MiB: several parts
    v2 = {k: v.copy() for k, v in v1.items()}
    v2["bf16"] = (v1["bf16"].astype(np.float32) + 1e-4).astype(ml_dtypes.bfloat16)
    v2["f32"][::3] = np.nan
    v2["i8"][:5] = 127
    v2["i64"][0] = -2**63
    v2["big"] = (v1["big"].astype(np.float32) - 1e-5).astype(ml_dtypes.bfloat16)
    return v1, v2


def blobs(sd):
    return [TensorBlob.from_numpy(k, v) for k, v in sd.items()]


def received(frames, base=None):
    asm = VersionAssembler(base=base)
    return [asm.feed(f) for f in frames][-1]


@pytest.mark.parametrize("chunk", [MiB, MiB + 1])   # MiB + 1: parts that split elements (joined before the diff)
def test_delta_of_mixed_dtypes_rebuilds_bit_exact(chunk):
    v1, v2 = versions()
    e1, e2 = encode_frames(1, blobs(v1), chunk), encode_frames(2, blobs(v2), chunk)
    d = encode_delta(e2, e1, chunk)
    assert d is not None and all(t.encoding == DIFF_ZSTD for t in d.manifest.tensors)
    out = received(d.frames, base=received(e1.frames))
    assert out.transport == "delta"
    assert all(out.tensors[k].tobytes() == v.tobytes() for k, v in v2.items())


def test_corrupt_or_retired_payloads_are_refused_naming_the_tensor():
    v1, v2 = versions()
    e1 = encode_frames(1, [TensorBlob.from_numpy("f32", v1["f32"])])
    e2 = encode_frames(2, [TensorBlob.from_numpy("f32", v2["f32"])])
    d = encode_delta(e2, e1)
    assert d is not None
    held = received(e1.frames)
    n = v1["f32"].size
    payload = b"".join(bytes(p) for p in wd.pack(wd.zigzag_diff(v2["f32"].view(np.uint32), v1["f32"].view(np.uint32))))
    for bad in (payload[:-1], payload + b"\0", payload[: wd.codes_nbytes(n) - 1]):
        with pytest.raises(wd.DiffPayloadError):
            wd.unpack(bad, v1["f32"].view(np.uint32))
        blob = zstandard.ZstdCompressor(level=1).compress(bad)
        m = weights_pb2.WeightManifest()
        m.CopyFrom(d.manifest)
        m.tensors[0].wire_nbytes = len(blob)
        frames = [weights_pb2.WeightUpdate(version=2, begin=m).SerializeToString(),
                  weights_pb2.WeightUpdate(version=2, part=weights_pb2.TensorPart(index=0, offset=0, data=blob)).SerializeToString(),
                  d.frames[-1]]
        with pytest.raises(WeightStreamError, match="delta tensor 'f32'"):
            received(frames, base=held)
    m = weights_pb2.WeightManifest()
    m.CopyFrom(d.manifest)
    m.tensors[0].encoding = weights_pb2.TENSOR_ENCODING_XOR_ZSTD
    with pytest.raises(WeightStreamError, match="'f32': unsupported encoding 1"):
        VersionAssembler(base=held).feed(weights_pb2.WeightUpdate(version=2, begin=m))
