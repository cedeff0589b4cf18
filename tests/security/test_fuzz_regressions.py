"""Crashes the fuzzer found, pinned (each was an INTERNAL before its fix)."""
import numpy as np
import pytest
import zstandard

from atlasrl import codec
from atlasrl.v1 import tensor_pb2


def test_shuffled_zstd_tensor_with_wrong_byte_count_is_a_codec_error():
    """MemoryService.Query got INTERNAL: unshuffle() reshaped 11 bytes into 2 planes before the length check."""
    t = codec.encode(np.arange(6, dtype=np.float16))
    t.codec = tensor_pb2.CODEC_ZSTD_SHUFFLE
    t.data = zstandard.ZstdCompressor().compress(b"\x01" * 11)
    with pytest.raises(codec.SizeError, match="carries 11 bytes"):
        codec.decode(t)
