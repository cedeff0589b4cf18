"""Protobuf wire-format primitives for the paths that splice messages by hand instead of building them:
the env server's step responses (atlasrl/envserver/convert.py) and the weight stream's frames
(atlasrl/weight_codec.py). https://protobuf.dev/programming-guides/encoding/#varints
"""
from __future__ import annotations

_ONE_BYTE = [bytes((n,)) for n in range(128)]


def varint(n: int) -> bytes:
    """``n`` (>= 0) as a base-128 varint."""
    if 0 <= n < 128:  # tags, lengths and small numbers: most calls on the env server's step path
        return _ONE_BYTE[n]
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint at ``pos``; IndexError when truncated or over 64 bits."""
    n = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise IndexError("truncated varint")
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7
