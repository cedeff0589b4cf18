"""Potential-based reward shaping from the atlases (Ng, Harada & Russell 1999).

    Phi(s)   = lambda_a * A(c_s) - lambda_d * D(c_s)
    F(s, s') = gamma * Phi(s') - Phi(s),     Phi(s') := 0 when s' is terminal

With the terminal convention, along an episode s_0 .. s_T (s_T terminal)

    sum_{t<T} gamma^t F(s_t, s_{t+1}) = gamma^T * Phi(s_T) - Phi(s_0) = -Phi(s_0)

so the shaped return differs from the env return by a constant of the start
state and the optimal policy is unchanged, as long as Phi is fixed over the
episode: shape a whole trajectory in one batch (one memory version).

The maps D, A of a layout come from ``layout_view``: the layout atlas, blended
with the family atlas seen through the goal while the layout has little support.
With n layout episodes and trust m0, the layout weight is w = n / (n + m0):

    M = w * M_layout + (1 - w) * project_family(M_family, goal)

(w = 1 when no goal is known; w = 0 for a layout never seen.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atlasrl.memory.atlas import Atlas, Cell, project_family
from atlasrl.memory.config import ShapingConfig

SOURCES = ("layout", "blended", "family", "empty")


@dataclass
class LayoutView:
    danger: np.ndarray      # (rows, cols) float32 in [0, 1]
    affinity: np.ndarray    # (rows, cols) float32 in [0, 1]
    source: str             # one of SOURCES
    layout_version: int
    family_version: int
    layout_episodes: int
    family_episodes: int


def layout_view(layout: Atlas | None, family: Atlas | None, rows: int, cols: int, goal: Cell | None,
                trust_episodes: float) -> LayoutView:
    """Maps of one layout, falling back to (or blending with) the goal-relative family atlas."""
    n = layout.episodes if layout is not None else 0
    goal = layout.goal if layout is not None and layout.goal is not None else goal
    usable_family = family is not None and family.episodes > 0 and goal is not None
    if n > 0 and usable_family and trust_episodes > 0:
        w = n / (n + trust_episodes)
    elif n > 0:
        w = 1.0
    else:
        w = 0.0
    zeros = np.zeros((rows, cols), np.float32)
    d_l = layout.danger if layout is not None and n > 0 else zeros
    a_l = layout.affinity if layout is not None and n > 0 else zeros
    if usable_family and w < 1.0:
        assert family is not None and goal is not None  # usable_family
        d_f = project_family(family.danger, goal, rows, cols)
        a_f = project_family(family.affinity, goal, rows, cols)
    else:
        d_f = a_f = zeros
    danger = (w * d_l + (1 - w) * d_f).astype(np.float32)
    affinity = (w * a_l + (1 - w) * a_f).astype(np.float32)
    if w == 1.0:
        source = "layout"
    elif w > 0:
        source = "blended"
    elif usable_family:
        source = "family"
    else:
        source = "empty"
    return LayoutView(danger, affinity, source,
                      layout.version if layout is not None else 0, family.version if family is not None else 0,
                      n, family.episodes if family is not None else 0)


def potential(view: LayoutView, cfg: ShapingConfig) -> np.ndarray:
    """Phi over the grid: lambda_a * A - lambda_d * D (float64)."""
    return cfg.lambda_affinity * view.affinity.astype(np.float64) - cfg.lambda_danger * view.danger.astype(np.float64)


def shaping_terms(phi: np.ndarray, cells: np.ndarray, next_cells: np.ndarray, terminal: np.ndarray,
                  gamma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(F, Phi(s), Phi(s')) for transitions on one grid; Phi(s') = 0 where terminal."""
    phi_s = phi[cells[:, 0], cells[:, 1]]
    phi_next = np.where(terminal, 0.0, phi[next_cells[:, 0], next_cells[:, 1]])
    return gamma * phi_next - phi_s, phi_s, phi_next
