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
    """Mean over a side x side grid of blocks (float32; H, W need not divide; tiny frames are stretched)."""
    f = frame.astype(np.float32)
    h, w = f.shape[:2]
    if h < side or w < side:
        return f[np.arange(side) * h // side][:, np.arange(side) * w // side]
    rows = np.linspace(0, h, side + 1).astype(int)
    cols = np.linspace(0, w, side + 1).astype(int)
    sums = np.add.reduceat(np.add.reduceat(f, rows[:-1], axis=0), cols[:-1], axis=1)
    area = np.diff(rows)[:, None] * np.diff(cols)[None, :]
    return sums / area[..., None]


def embed(frame: np.ndarray, side: int = 12, bins: int = 8) -> np.ndarray:
    """Unit-norm float32 embedding of an RGB uint8 (H, W, 3) frame."""
    small = area_downsample(frame, side) / 255.0
    spatial = (small - small.mean()).ravel()
    binned = (frame.reshape(-1, 3).astype(np.uint32) * bins) >> 8  # bin index per channel value
    hist = np.concatenate([np.bincount(binned[:, ch], minlength=bins) for ch in range(3)]).astype(np.float32)
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
