"""Local image embedding for exemplar retrieval: no weights to download.

    e = embed(frame)             # float32 unit vector
    sim = float(e1 @ e2)         # cosine similarity

The vector concatenates (1) the frame area-averaged to side x side RGB, centred
by its mean (layout and positions, insensitive to overall brightness) and (2)
per-channel colour histograms (what is on screen, insensitive to position).
Each part is scaled to unit norm before the concatenation so neither dominates,
then the whole is L2-normalised, making the dot product a cosine similarity.
"""
from __future__ import annotations

import numpy as np


def area_downsample(frame: np.ndarray, side: int) -> np.ndarray:
    """Mean over a side x side grid of blocks (float32, HxW need not divide)."""
    h, w = frame.shape[:2]
    rows = np.linspace(0, h, side + 1).astype(int)
    cols = np.linspace(0, w, side + 1).astype(int)
    f = frame.astype(np.float32)
    # cumulative sums give exact block means for uneven blocks
    cs = np.zeros((h + 1, w + 1, f.shape[2]), np.float64)
    cs[1:, 1:] = f.cumsum(0).cumsum(1)
    r0, r1 = rows[:-1], np.maximum(rows[1:], rows[:-1] + 1)
    c0, c1 = cols[:-1], np.maximum(cols[1:], cols[:-1] + 1)
    r1, c1 = np.minimum(r1, h), np.minimum(c1, w)
    total = cs[r1][:, c1] - cs[r0][:, c1] - cs[r1][:, c0] + cs[r0][:, c0]
    area = ((r1 - r0)[:, None] * (c1 - c0)[None, :])[..., None]
    return (total / np.maximum(area, 1)).astype(np.float32)


def embed(frame: np.ndarray, side: int = 12, bins: int = 8) -> np.ndarray:
    """Unit-norm float32 embedding of an RGB uint8 (H, W, 3) frame."""
    small = area_downsample(frame, side) / 255.0
    spatial = (small - small.mean()).ravel()
    hist = np.concatenate([np.histogram(frame[..., ch], bins=bins, range=(0, 256))[0] for ch in range(3)]).astype(np.float32)
    hist = np.sqrt(hist / max(1.0, float(frame.shape[0] * frame.shape[1])))  # Hellinger-style
    parts = [_unit(spatial), _unit(hist)]
    return _unit(np.concatenate(parts)).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def shrink(frame: np.ndarray, max_side: int) -> np.ndarray:
    """Downsample (integer stride of block means) so the longer side is at most max_side."""
    h, w = frame.shape[:2]
    factor = int(np.ceil(max(h, w) / max_side))
    if factor <= 1:
        return frame
    hh, ww = h // factor * factor, w // factor * factor
    blocks = frame[:hh, :ww].reshape(hh // factor, factor, ww // factor, factor, -1).astype(np.float32)
    return blocks.mean(axis=(1, 3)).round().astype(np.uint8)
