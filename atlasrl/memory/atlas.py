"""Danger and affinity atlases: per-cell trajectory statistics turned into [0, 1] heatmaps.

For one episode with agent cells c_0 .. c_T (states s_0 .. s_T), success flag and
terminal cause k, with failure weight w_k (config ``cause_weights``):

    N(c) += #{t : c_t = c}                                  visits
    F(c) += sum_{t : c_t = c} w_k * gamma_d ** (T - t)      failure mass (failed episodes only)
    S(c) += sum_{t : c_t = c} gamma_a ** (T - t)            success mass (successful episodes only)

and, with ``stall_steps`` = K > 0, each visit that ends K or more consecutive steps on one cell adds at
least w_stall to F whatever the outcome (its F term is max(w_k * gamma_d ** (T - t), w_stall));
so a cell gets danger for being close in time to a failure (the hole itself gets
w_k per visit, the cell before it w_k * gamma_d, ...) and affinity for lying on
successful trajectories, discounted by how far from the end it was. Evidence is a
per-visit rate with kappa pseudo-visits, normalised to [0, 1]:

    D^(c) = F(c) / (N(c) + kappa),   A^(c) = S(c) / (N(c) + kappa)
    "bound" (default): D~ = D^ / w_max,    A~ = A^        (each visit adds at most w_max, resp. 1)
    "max":             D~ = D^ / max_c D^, A~ = A^ / max_c A^   (0 when the max is 0)

"bound" keeps an absolute meaning (a hole entered on every visit tends to 1, an
offset that failed 20% of the time stays near 0.2), so maps of different layouts,
and the family atlas, share one scale; "max" stretches every map to a peak of 1.

The published maps are EMA blends, updated once per applied episode (rate eta):

    D <- (1 - eta) * D + eta * D~,   A <- (1 - eta) * A + eta * A~

(the first episode of an atlas sets D = D~, A = A~). The EMA keeps the maps, and so
the shaping potential, from jumping between versions.

Layout atlases index cells (row, col) of an R x C grid. The family atlas indexes
goal offsets: cell c with goal g lands at (c - g) + (R - 1, C - 1) in a
(2R - 1) x (2C - 1) grid, so what was learned near goals transfers to unseen
layouts. It grows (centred) when a larger grid of the family arrives.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from atlasrl.memory.config import AtlasConfig

Cell = tuple[int, int]


class Atlas:
    """Sufficient statistics and blended heatmaps of one grid."""

    def __init__(self, rows: int, cols: int):
        self.rows, self.cols = rows, cols
        shape = (rows, cols)
        self.visits = np.zeros(shape)              # N
        self.fail_mass = np.zeros(shape)           # F
        self.success_mass = np.zeros(shape)        # S
        self.success_episode_visits = np.zeros(shape)  # successful episodes that passed through the cell
        self.end_counts: dict[str, np.ndarray] = {}    # cause -> episodes that ended on the cell
        self.entity_ends: dict[str, np.ndarray] = {}   # "<kind>/<terminal cause>" -> final entity cells
        self.danger = np.zeros(shape, np.float32)      # D
        self.affinity = np.zeros(shape, np.float32)    # A
        self.episodes = 0
        self.successes = 0
        self.cause_counts: dict[str, int] = {}
        self.version = 0
        self.goal: Cell | None = None                  # layout atlases: the goal seen in its episodes
        self.statics: dict[str, list[Cell]] = {}       # layout atlases: static entity cells by kind (targets, holes)

    # -- updates -----------------------------------------------------------------

    def add_episode(self, cells: np.ndarray, success: bool, cause: str, cfg: AtlasConfig,
                    entity_ends: Sequence[tuple[str, Sequence[int]]] = ()) -> None:
        """Apply one episode; ``cells`` (T + 1, 2) are already in this atlas's index space."""
        rows, cols = cells[:, 0], cells[:, 1]
        steps_to_end = (len(cells) - 1) - np.arange(len(cells))
        np.add.at(self.visits, (rows, cols), 1.0)
        if success:
            np.add.at(self.success_mass, (rows, cols), cfg.gamma_affinity ** steps_to_end)
            passed = np.zeros_like(self.visits, dtype=bool)
            passed[rows, cols] = True
            self.success_episode_visits += passed
            self.successes += 1
            fail: np.ndarray = np.zeros(len(cells))
        else:
            weight = cfg.cause_weights.get(cause, cfg.other_cause_weight)
            fail = weight * cfg.gamma_danger ** steps_to_end
        if cfg.stall_steps:  # a stalled visit weighs at least stall_weight: the larger of the two, so <= w_max
            fail = np.maximum(fail, min(cfg.stall_weight, max_cause_weight(cfg)) * stalled(cells, cfg.stall_steps))
        np.add.at(self.fail_mass, (rows, cols), fail)
        end = self.end_counts.setdefault(cause, np.zeros_like(self.visits))
        end[rows[-1], cols[-1]] += 1
        for kind, (r, c) in entity_ends:
            counts = self.entity_ends.setdefault(f"{kind}/{cause}", np.zeros_like(self.visits))
            counts[r, c] += 1
        self.cause_counts[cause] = self.cause_counts.get(cause, 0) + 1
        self.episodes += 1
        self._blend(cfg)
        self.version += 1

    def _blend(self, cfg: AtlasConfig) -> None:
        d_rate = self.fail_mass / (self.visits + cfg.prior_visits)
        a_rate = self.success_mass / (self.visits + cfg.prior_visits)
        if cfg.normalisation == "max":
            d_new, a_new = _normalised(d_rate), _normalised(a_rate)
        else:  # "bound": each visit adds at most w_max (danger) or 1 (affinity), so the rates stay below them
            d_new, a_new = d_rate / max_cause_weight(cfg), a_rate
        eta = 1.0 if self.episodes <= 1 else cfg.blend_rate
        self.danger = ((1 - eta) * self.danger + eta * d_new).astype(np.float32)
        self.affinity = ((1 - eta) * self.affinity + eta * a_new).astype(np.float32)

    def grow(self, rows: int, cols: int) -> None:
        """Enlarge to at least rows x cols keeping the centre (family atlases: offset 0 stays central)."""
        rows, cols = max(rows, self.rows), max(cols, self.cols)
        if (rows, cols) == (self.rows, self.cols):
            return
        dr, dc = (rows - self.rows) // 2, (cols - self.cols) // 2

        def pad(a: np.ndarray) -> np.ndarray:
            out = np.zeros((rows, cols), a.dtype)
            out[dr:dr + self.rows, dc:dc + self.cols] = a
            return out

        for name in ("visits", "fail_mass", "success_mass", "success_episode_visits", "danger", "affinity"):
            setattr(self, name, pad(getattr(self, name)))
        self.end_counts = {k: pad(v) for k, v in self.end_counts.items()}
        self.entity_ends = {k: pad(v) for k, v in self.entity_ends.items()}
        self.rows, self.cols = rows, cols

    # -- persistence -------------------------------------------------------------

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able metadata, named arrays) for a snapshot."""
        meta = {"rows": self.rows, "cols": self.cols, "episodes": self.episodes, "successes": self.successes,
                "version": self.version, "cause_counts": self.cause_counts,
                "goal": list(self.goal) if self.goal is not None else None,
                "statics": {k: [list(c) for c in v] for k, v in self.statics.items()},
                "end_causes": sorted(self.end_counts), "entity_keys": sorted(self.entity_ends)}
        arrays: dict[str, np.ndarray] = {"visits": self.visits, "fail_mass": self.fail_mass, "success_mass": self.success_mass,
                  "success_episode_visits": self.success_episode_visits, "danger": self.danger, "affinity": self.affinity}
        arrays.update({f"end:{k}": v for k, v in self.end_counts.items()})
        arrays.update({f"entity:{k}": v for k, v in self.entity_ends.items()})
        return meta, {k: v.copy() for k, v in arrays.items()}

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray]) -> Atlas:
        a = cls(int(meta["rows"]), int(meta["cols"]))
        for name in ("visits", "fail_mass", "success_mass", "success_episode_visits"):
            setattr(a, name, np.asarray(arrays[name], np.float64))
        a.danger = np.asarray(arrays["danger"], np.float32)
        a.affinity = np.asarray(arrays["affinity"], np.float32)
        a.end_counts = {k: np.asarray(arrays[f"end:{k}"], np.float64) for k in meta["end_causes"]}
        a.entity_ends = {k: np.asarray(arrays[f"entity:{k}"], np.float64) for k in meta["entity_keys"]}
        a.episodes, a.successes, a.version = int(meta["episodes"]), int(meta["successes"]), int(meta["version"])
        a.cause_counts = {k: int(v) for k, v in meta["cause_counts"].items()}
        a.goal = tuple(meta["goal"]) if meta.get("goal") is not None else None
        a.statics = {k: [tuple(c) for c in v] for k, v in meta.get("statics", {}).items()}
        for name in ("visits", "danger", "affinity"):
            if getattr(a, name).shape != (a.rows, a.cols):
                raise ValueError(f"snapshot atlas array '{name}' has shape {getattr(a, name).shape}, expected {(a.rows, a.cols)}")
        return a


def max_cause_weight(cfg: AtlasConfig) -> float:
    return max([cfg.other_cause_weight, *cfg.cause_weights.values()]) or 1.0


def stalled(cells: np.ndarray, min_run: int) -> np.ndarray:
    """1.0 at steps t where cells[t - min_run + 1 .. t] are one cell (the agent has not left it for min_run steps)."""
    same = np.ones(len(cells), np.int64)
    for t in range(1, len(cells)):
        if cells[t, 0] == cells[t - 1, 0] and cells[t, 1] == cells[t - 1, 1]:
            same[t] = same[t - 1] + 1
    return (same >= min_run).astype(np.float64)


def _normalised(x: np.ndarray) -> np.ndarray:
    m = float(x.max()) if x.size else 0.0
    return x / m if m > 0 else np.zeros_like(x)


# -- goal-relative coordinates -------------------------------------------------


def family_shape(rows: int, cols: int) -> tuple[int, int]:
    """Size of the goal-offset grid for an R x C layout."""
    return 2 * rows - 1, 2 * cols - 1


def to_offsets(cells: np.ndarray, goal: Cell, family_rows: int, family_cols: int) -> np.ndarray:
    """Layout cells -> family-atlas indices: (c - g) + centre."""
    centre = np.array([(family_rows - 1) // 2, (family_cols - 1) // 2])
    return np.asarray(cells, np.int64) - np.asarray(goal, np.int64) + centre


def project_family(family_map: np.ndarray, goal: Cell, rows: int, cols: int) -> np.ndarray:
    """The family map seen from a layout: M_L(c) = M_F((c - g) + centre); 0 where off the family grid."""
    fr, fc = family_map.shape
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    idx = to_offsets(np.stack([rr.ravel(), cc.ravel()], 1), goal, fr, fc)
    inside = (idx[:, 0] >= 0) & (idx[:, 0] < fr) & (idx[:, 1] >= 0) & (idx[:, 1] < fc)
    out = np.zeros(rows * cols, np.float32)
    out[inside] = family_map[idx[inside, 0], idx[inside, 1]]
    return out.reshape(rows, cols)
