"""Heatmaps and atlas overlays as RGB images: one renderer for the memory service (Query overlays), the actor
(its per-turn overlay from the group's frozen atlas), the debug client and the benches.

    img = overlay(frame, danger, affinity, agent=(3, 4))   # uint8 (H, W, 3)

The grid is stretched over the whole frame (grid games render the full map), red
shows danger, green affinity; the agent cell gets a yellow outline. Without a
frame the overlay is drawn on a dark canvas of cell_px pixels per cell.
"""
from __future__ import annotations

import numpy as np

Cell = tuple[int, int]


def upsample(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-cell stretch of a (rows, cols) grid to (height, width)."""
    rows, cols = grid.shape
    ri = np.minimum(np.arange(height) * rows // height, rows - 1)
    ci = np.minimum(np.arange(width) * cols // width, cols - 1)
    return grid[ri][:, ci]


def heatmap(grid: np.ndarray, colour: tuple[int, int, int], cell_px: int = 32) -> np.ndarray:
    """A [0, 1] grid as an RGB image: black (0) to ``colour`` (1), with thin cell borders."""
    rows, cols = grid.shape
    v = upsample(np.clip(grid, 0, 1).astype(np.float32), rows * cell_px, cols * cell_px)
    img = (v[..., None] * np.asarray(colour, np.float32)).astype(np.uint8)
    img[::cell_px, :] = 64
    img[:, ::cell_px] = 64
    return img


def overlay_layers(danger: np.ndarray, affinity: np.ndarray, height: int, width: int,
                   alpha: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """(keep, add) so that ``frame * keep + add`` is the tinted frame: they depend only on the maps and the frame
    size, so a caller with fixed maps (the actor's frozen atlas) computes them once and tints every frame."""
    d = upsample(np.clip(danger, 0, 1).astype(np.float32), height, width)
    a = upsample(np.clip(affinity, 0, 1).astype(np.float32), height, width)
    strength = alpha * np.maximum(d, a)[..., None]
    tint = np.stack([255 * d, 255 * a, np.zeros_like(d)], -1) / np.maximum(np.maximum(d, a), 1e-6)[..., None]
    return (1 - strength).astype(np.float32), (tint * strength).astype(np.float32)


def overlay(frame: np.ndarray | None, danger: np.ndarray, affinity: np.ndarray, agent: Cell | None = None,
            alpha: float = 0.6, cell_px: int = 32, layers: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    rows, cols = danger.shape
    if frame is None:
        frame = np.full((rows * cell_px, cols * cell_px, 3), 40, np.uint8)
    h, w = frame.shape[:2]
    keep, add = layers if layers is not None else overlay_layers(danger, affinity, h, w, alpha)
    out = frame.astype(np.float32) * keep + add
    img = np.clip(out, 0, 255).astype(np.uint8)
    if agent is not None and 0 <= agent[0] < rows and 0 <= agent[1] < cols:
        y0, y1 = agent[0] * h // rows, max((agent[0] + 1) * h // rows - 1, agent[0] * h // rows)
        x0, x1 = agent[1] * w // cols, max((agent[1] + 1) * w // cols - 1, agent[1] * w // cols)
        t = max(1, min(h // rows, w // cols) // 16)
        yellow = np.array([255, 220, 0], np.uint8)
        img[y0:y0 + t, x0:x1 + 1] = yellow
        img[y1 - t + 1:y1 + 1, x0:x1 + 1] = yellow
        img[y0:y1 + 1, x0:x0 + t] = yellow
        img[y0:y1 + 1, x1 - t + 1:x1 + 1] = yellow
    return img


def overlay_box(frame: np.ndarray, danger: np.ndarray, affinity: np.ndarray, box: tuple[int, int, int, int],
                agent: Cell | None = None, alpha: float = 0.6) -> np.ndarray:
    """``overlay`` inside the pixel box (top, bottom, left, right) of ``frame`` only: maps whose grid covers part
    of a picture, such as a MiniWorld floor plan inside its top-down view (the env reports the box)."""
    h, w = frame.shape[:2]
    top, bottom, left, right = max(0, box[0]), min(h, box[1]), max(0, box[2]), min(w, box[3])
    out = np.array(frame, np.uint8, copy=True)
    if bottom - top >= danger.shape[0] and right - left >= danger.shape[1]:   # at least a pixel per cell
        out[top:bottom, left:right] = overlay(out[top:bottom, left:right], danger, affinity, agent=agent, alpha=alpha)
    return out
