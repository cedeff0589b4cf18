"""Element-wise difference of two versions of a tensor, coded so that zstd-1 packs a small update tightly: the
payload of the delta weight transport (``TENSOR_ENCODING_DIFF_ZSTD``, encoded in atlasrl/weight_codec.py).

    z = zigzag_diff(new_u, base_u)            # unsigned integers of the element's width
    pieces = pack(z)                          # [codes, escapes]: zstd-compress them as one frame
    new_u = unpack(payload, base_u)           # the inverse, from the decompressed payload

Why not XOR + zstd. After one Adam step of 1e-5 on bf16 weights of scale 0.02 about a quarter of the values
move, nearly all by one unit in the last place. XOR turns a one-ulp step into 1, 3, 7, 15 ... (carries), and zstd's
Huffman literals cost at least one bit per byte, so a plane that is three quarters zeros still costs more than a bit
per element: 18.7 % of the full bytes (bench/weight_sync.py, 20M parameters), 13.4 % as zigzag byte planes. Here an
element costs a 2-bit code, four to a byte, which lets the entropy coder work on groups of four: 9.0 %.

Layout, for n elements of w bytes (w in 1, 2, 4, 8), read as little-endian unsigned integers:
  codes    ceil(n / 4) bytes; element i's code sits in bits 2 * (i % 4) of byte i // 4: min(z_i, 3)
  escapes  the k elements whose code is 3, their z as w byte planes (the k least significant bytes, then the
           next k ...): k * w bytes
``z = zigzag(new - base)``, the difference taken modulo 2^(8w) so every bit pattern round-trips (sign changes,
NaN, inf); zigzag maps 0, -1, 1, -2, 2 ... to 0, 1, 2, 3, 4, so a small step either way is a small code.
Importable without torch.
"""
from __future__ import annotations

import numpy as np

UINT: dict[int, np.dtype] = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}
SINT: dict[int, np.dtype] = {1: np.dtype("<i1"), 2: np.dtype("<i2"), 4: np.dtype("<i4"), 8: np.dtype("<i8")}
ESCAPE = 3
# byte -> its four 2-bit codes: one gather unpacks a whole tensor's codes
_UNPACK = ((np.arange(256, dtype=np.uint8)[:, None] >> np.array([0, 2, 4, 6], np.uint8)) & 3).astype(np.uint8)


class DiffPayloadError(ValueError):
    """A payload whose length does not match its codes (a corrupt delta)."""


def zigzag_diff(new: np.ndarray, base: np.ndarray) -> np.ndarray:
    """zigzag(new - base) element-wise, as a new array; both unsigned arrays of one width (the difference wraps)."""
    w = new.dtype.itemsize
    d = np.subtract(new, base).view(SINT[w])
    z = np.left_shift(d, 1)
    np.bitwise_xor(z, np.right_shift(d, 8 * w - 1), out=z)   # arithmetic shift: all ones for a negative step
    return z.view(UINT[w])


def codes_nbytes(n: int) -> int:
    return (n + 3) // 4


def max_payload_nbytes(nbytes: int, itemsize: int) -> int:
    """The payload when every element escapes: its codes and all its bytes."""
    return codes_nbytes(nbytes // itemsize) + nbytes


def pack(z: np.ndarray) -> list[memoryview]:
    """The payload of ``z`` as pieces to compress in order: the codes, then the escapes' byte planes."""
    n, w = z.size, z.dtype.itemsize
    codes = np.zeros(codes_nbytes(n) * 4, np.uint8)
    np.minimum(z, ESCAPE, out=codes[:n], casting="unsafe")
    # four codes (one byte each, little-endian in a uint32) into one byte: byte j lands at bits 2j
    x = codes.view("<u4")
    packed = ((x | (x >> 6) | (x >> 12) | (x >> 18)) & 0xFF).astype(np.uint8)
    esc = z[np.flatnonzero(codes[:n] == ESCAPE)]
    planes = np.ascontiguousarray(esc.astype(UINT[w], copy=False).view(np.uint8).reshape(-1, w).T)
    return [memoryview(packed), memoryview(planes.reshape(-1))]   # type: ignore[arg-type]  # numpy declares ndarray.__buffer__ for Python 3.12+ only


def unpack(payload: bytes | memoryview, base: np.ndarray) -> np.ndarray:
    """``new`` from the decompressed payload and ``base`` (unsigned, flat): a new array of base's dtype.

    Three passes over the tensor: one table lookup turns each code byte into its four steps (0, -1, +1; escapes
    0 for now), the few bytes that hold an escape are found and their escapes written in, then the base is added
    (20M bf16 values after the bench's update: 0.06-0.07 s, where decoding every code and un-zigzagging the whole
    tensor took 0.09-0.13 s)."""
    n, w = base.size, base.dtype.itemsize
    m = codes_nbytes(n)
    buf = np.frombuffer(payload, np.uint8)
    if buf.size < m:
        raise DiffPayloadError(f"payload of {buf.size} bytes is shorter than the codes of {n} elements ({m})")
    packed = buf[:m]
    d = _steps(w)[packed].view(UINT[w])[:n]
    hot = np.flatnonzero(_HAS_ESCAPE[packed])
    rows, cols = np.nonzero(_ESCAPES[packed[hot]].view(np.bool_).reshape(-1, 4))
    idx = hot[rows] * 4 + cols                 # ascending: bytes in order, codes in order within a byte
    if idx.size and idx[-1] >= n:
        raise DiffPayloadError(f"an escape code past the last of {n} elements")
    if buf.size != m + idx.size * w:
        raise DiffPayloadError(f"payload of {buf.size} bytes; its codes name {idx.size} escapes of {w} bytes "
                               f"after {m} bytes of codes")
    z = np.ascontiguousarray(buf[m:].reshape(w, -1).T).view(UINT[w]).reshape(-1)
    d[idx] = (z >> 1) ^ -(z & 1)                   # un-zigzag (unsigned: -1 is all ones)
    return np.add(d, base, out=d)                  # wrapping


_HAS_ESCAPE = (_UNPACK == ESCAPE).any(axis=1)
_ESCAPES = np.ascontiguousarray(_UNPACK == ESCAPE).view(np.dtype((np.void, 4))).reshape(256)   # byte -> 4 flags
_STEP_OF_CODE = np.array([0, -1, 1, 0], np.int64)      # code 0, 1, 2 are zigzag 0, -1, +1; an escape is filled in
_STEPS: dict[int, np.ndarray] = {}


def _steps(w: int) -> np.ndarray:
    """byte -> its four codes' steps as unsigned integers of width ``w``, built once per width: 256 entries of one
    4w-byte item each, so the lookup copies whole items (a 256 x 4 table indexed by rows was 10x slower)."""
    if w not in _STEPS:
        table = np.ascontiguousarray(_STEP_OF_CODE[_UNPACK].astype(SINT[w]))
        _STEPS[w] = table.view(np.dtype((np.void, 4 * w))).reshape(256)
    return _STEPS[w]
