"""Tensor codec: round trips over every allowed dtype and shape, and every guard."""
import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from atlasrl import codec
from atlasrl.v1 import tensor_pb2

DTYPES = [np.dtype(d) for d in ["u1", "i1", "i2", "i4", "i8", "u2", "u4", "f2", "f4", "f8", "bool"]]


@settings(max_examples=200, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=12),
    compress=st.sampled_from([None, True, False]),
    data=st.data(),
)
def test_round_trip(dtype, shape, compress, data):
    arr = data.draw(hnp.arrays(dtype, shape))
    t = codec.encode(arr, name="x", compress=compress)
    out = codec.decode(t)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)  # NaN-aware, bit patterns of floats preserved below
    if dtype.kind == "f":
        assert out.tobytes() == arr.tobytes()


def test_bfloat16_round_trip():
    import ml_dtypes

    arr = np.linspace(-3, 3, 64, dtype=np.float32).astype(ml_dtypes.bfloat16).reshape(8, 8)
    t = codec.encode(arr)
    assert t.dtype == tensor_pb2.DTYPE_BFLOAT16
    assert codec.decode(t).tobytes() == arr.tobytes()


def test_compresses_rendered_frames_and_skips_noise():
    frame = np.zeros((128, 128, 3), np.uint8)
    frame[32:64, 32:64] = (200, 40, 40)
    t = codec.encode(frame)
    assert t.codec == tensor_pb2.CODEC_ZSTD and len(t.data) * 20 < frame.nbytes
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    assert codec.encode(noise).codec == tensor_pb2.CODEC_RAW


def test_multibyte_uses_shuffle():
    heat = np.tile(np.linspace(0, 1, 64, dtype=np.float16), (64, 1))
    t = codec.encode(heat)
    assert t.codec == tensor_pb2.CODEC_ZSTD_SHUFFLE
    assert len(t.data) < len(codec.encode(heat, compress=False).data) / 1.3


def test_shuffle_is_a_permutation():
    raw = np.arange(24, dtype=np.uint8).tobytes()
    assert codec.unshuffle(codec.shuffle(raw, 4), 4) == raw
    assert codec.shuffle(raw, 4)[:6] == bytes([0, 4, 8, 12, 16, 20])


@pytest.mark.parametrize("dtype", ["complex64", "object", "U3", "datetime64[s]"])
def test_encode_rejects_disallowed_dtypes(dtype):
    with pytest.raises(codec.DTypeError, match="not allowed"):
        codec.encode(np.zeros(2, dtype=dtype))


def test_decode_rejects_invalid_dtype():
    t = tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_INVALID, shape=[1], codec=tensor_pb2.CODEC_RAW, data=b"\0")
    with pytest.raises(codec.DTypeError, match="DTYPE_INVALID"):
        codec.decode(t)
    t.dtype = 999
    with pytest.raises(codec.DTypeError, match="999"):
        codec.decode(t)


def test_byte_count_must_match_shape():
    t = codec.encode(np.zeros((4, 4), np.float32), compress=False)
    t.data = t.data[:-1]
    with pytest.raises(codec.SizeError, match="carries 63 bytes but shape \\[4, 4\\]"):
        codec.decode(t)
    t = codec.encode(np.zeros((4, 4), np.float32), compress=True)
    t.shape[:] = [4, 5]
    with pytest.raises(codec.SizeError):
        codec.decode(t)


def test_zstd_bomb_is_capped():
    bomb = zstandard.ZstdCompressor(level=19).compress(b"\0" * (64 << 20))
    assert len(bomb) < 10_000
    t = tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_UINT8, shape=[16], codec=tensor_pb2.CODEC_ZSTD, data=bomb)
    with pytest.raises(codec.SizeError, match="more than the 16 bytes"):
        codec.decode(t)


def test_decode_size_cap():
    t = tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_FLOAT32, shape=[1 << 20, 1 << 10], codec=tensor_pb2.CODEC_RAW)
    with pytest.raises(codec.SizeError, match="exceeds the decode limit"):
        codec.decode(t)


def test_shape_and_rank_limits():
    with pytest.raises(codec.ShapeError, match="rank 9"):
        codec.decode(tensor_pb2.Tensor(dtype=1, shape=[1] * 9, codec=1, data=b"\0"))
    with pytest.raises(codec.ShapeError, match="dimension -3"):
        codec.decode(tensor_pb2.Tensor(dtype=1, shape=[-3], codec=1))
    with pytest.raises(codec.ShapeError, match="out of range"):
        codec.decode(tensor_pb2.Tensor(dtype=1, shape=[1 << 40], codec=1))


def test_corrupt_zstd_and_unknown_codec():
    t = tensor_pb2.Tensor(dtype=1, shape=[4], codec=tensor_pb2.CODEC_ZSTD, data=b"not zstd")
    with pytest.raises(codec.CompressionError, match="corrupt zstd"):
        codec.decode(t)
    t = tensor_pb2.Tensor(dtype=1, shape=[1], codec=tensor_pb2.CODEC_INVALID, data=b"\0")
    with pytest.raises(codec.CompressionError, match="unknown codec"):
        codec.decode(t)


def test_bool_rejects_non_binary_bytes():
    t = tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_BOOL, shape=[2], codec=tensor_pb2.CODEC_RAW, data=b"\x00\x07")
    with pytest.raises(codec.CodecError, match="bool"):
        codec.decode(t)


def test_errors_are_value_errors_for_servers():
    assert issubclass(codec.CodecError, ValueError)
    import grpc

    from atlasrl.rpc.errors import status_of

    code, msg = status_of(codec.SizeError("x carries 3 bytes"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "3 bytes" in msg


def test_concurrent_encode_decode_from_threads():
    """Compression contexts are per thread: many threads encoding at once stay correct."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(0)
    frames = [np.repeat(rng.integers(0, 4, (32, 32, 1), dtype=np.uint8) * 60, 3, axis=2) for _ in range(8)]

    def work(i):
        for _ in range(200):
            f = frames[i]
            assert np.array_equal(codec.decode(codec.encode(f, compress=True)), f)
        return True

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(8)))
