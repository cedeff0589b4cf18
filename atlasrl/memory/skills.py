"""Teacher-free text skills: template rules over atlas statistics, each with its support.

Templates (thresholds in SkillConfig):

- ``avoid_cells``: cells whose visits ended in failure k at a rate
  end_k(c) / N(c) >= danger_rate (N(c) >= min_support): "cells (2,3) and (3,1)
  ended 84% of visits in a hole: avoid them". rate = pooled sum(end_k) / sum(N),
  support = pooled visits.
- ``success_corridor``: cells that at least corridor_rate of the successful
  episodes passed through (>= min_support successes).
- ``entity_dead_end``: cells where a movable entity (a box) was left at the end
  of >= min_support episodes that failed there (deadlock, ...; not timeouts) and
  of no successful one, excluding targets: "a box left at (1,4), which is not a
  target, ended 7 episodes in a deadlock and never led to success".
- ``outcome_summary`` / ``family_summary``: success rate and failure causes of
  the layout / of the whole family.
- ``goal_relative``: ``avoid_cells`` on the family atlas, in offsets from the goal,
  once at least two layouts of the family were seen, so the rule transfers to
  unseen layouts.

Rules are a pure function of an atlas, so they change exactly when its version
does; callers cache them by version.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from atlasrl.memory.atlas import Atlas, Cell
from atlasrl.memory.config import SkillConfig

NON_SPATIAL_CAUSES = ("success", "timeout")


@dataclass
class Skill:
    text: str
    kind: str
    support: int
    rate: float
    cells: list[Cell] = field(default_factory=list)


def layout_skills(atlas: Atlas, cfg: SkillConfig) -> list[Skill]:
    skills = _avoid(atlas, cfg, fmt=_cell, kind="avoid_cells")
    skills += _corridor(atlas, cfg)
    skills += _dead_ends(atlas, cfg)
    skills += _summary(atlas, "in this layout")
    return skills


def family_skills(family: str, atlas: Atlas, cfg: SkillConfig, layouts: int) -> list[Skill]:
    """Goal-relative rules need at least two layouts behind them (one layout is its own rules in offsets)."""
    centre = ((atlas.rows - 1) // 2, (atlas.cols - 1) // 2)

    def offset(c: Cell) -> str:
        dr, dc = c[0] - centre[0], c[1] - centre[1]
        return f"({dr:+d},{dc:+d})"

    rules = []
    if layouts >= 2:
        rules = _avoid(atlas, cfg, fmt=offset, kind="goal_relative", where=f" from the goal (over {layouts} layouts)")
    for r in rules:
        r.cells = [(c[0] - centre[0], c[1] - centre[1]) for c in r.cells]
    return rules + _summary(atlas, f"across {family} layouts", kind="family_summary")


def _avoid(atlas: Atlas, cfg: SkillConfig, fmt, kind: str, where: str = "") -> list[Skill]:
    out = []
    for cause, ends in sorted(atlas.end_counts.items()):
        if cause in NON_SPATIAL_CAUSES:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(atlas.visits > 0, ends / np.maximum(atlas.visits, 1e-12), 0.0)
        mask = (atlas.visits >= cfg.min_support) & (rate >= cfg.danger_rate)
        cells = _top_cells(mask, rate, cfg.max_cells)
        if not cells:
            continue
        visits = int(sum(atlas.visits[c] for c in cells))
        pooled = sum(ends[c] for c in cells) / max(visits, 1)
        label = ("offset" if kind == "goal_relative" else "cell") + ("s" if len(cells) > 1 else "")
        text = (f"{label} {_join([fmt(c) for c in cells])}{where} ended {pooled:.0%} of {visits} visits "
                f"in {_article(cause)}: avoid {'them' if len(cells) > 1 else 'it'}")
        out.append(Skill(text, kind, visits, float(pooled), cells))
    return out


def _corridor(atlas: Atlas, cfg: SkillConfig) -> list[Skill]:
    if atlas.successes < cfg.min_support:
        return []
    share = atlas.success_episode_visits / atlas.successes
    mask = share >= cfg.corridor_rate
    if atlas.goal is not None:
        mask[atlas.goal] = False  # reaching the goal is the task, not advice
    cells = _top_cells(mask, atlas.affinity + 1e-3 * share, cfg.max_cells)
    if not cells:
        return []
    rate = float(min(share[c] for c in cells))
    text = (f"successful episodes passed through {'cells' if len(cells) > 1 else 'cell'} {_join([_cell(c) for c in cells])} "
            f"(at least {rate:.0%} of {atlas.successes} successes): head for {'them' if len(cells) > 1 else 'it'}")
    return [Skill(text, "success_corridor", atlas.successes, rate, cells)]


def _dead_ends(atlas: Atlas, cfg: SkillConfig) -> list[Skill]:
    out = []
    targets = set(atlas.statics.get("target", [])) | set(atlas.statics.get("goal", []))
    for key, fails in sorted(atlas.entity_ends.items()):
        kind, cause = key.split("/", 1)
        if cause in NON_SPATIAL_CAUSES:  # a box that never moved before a timeout says nothing about its cell
            continue
        wins = atlas.entity_ends.get(f"{kind}/success", np.zeros_like(fails))
        mask = (fails >= cfg.min_support) & (wins == 0)
        for c in targets:
            if 0 <= c[0] < atlas.rows and 0 <= c[1] < atlas.cols:
                mask[c] = False
        for c in _top_cells(mask, fails, cfg.max_cells):
            n = int(fails[c])
            text = (f"a {kind} left at {_cell(c)}, which is not a target, ended {n} episodes in {_article(cause)} "
                    f"and never led to success: do not push it there")
            out.append(Skill(text, "entity_dead_end", n, 0.0, [c]))
    return out


def _summary(atlas: Atlas, where: str, kind: str = "outcome_summary") -> list[Skill]:
    if atlas.episodes == 0:
        return []
    rate = atlas.successes / atlas.episodes
    failures = {k: v for k, v in atlas.cause_counts.items() if k != "success"}
    n_fail = sum(failures.values())
    causes = ", ".join(f"{k} {v / n_fail:.0%}" for k, v in sorted(failures.items(), key=lambda kv: -kv[1])) if n_fail else "none"
    text = f"{where}, {rate:.0%} of {atlas.episodes} episodes succeeded; failures: {causes}"
    return [Skill(text, kind, atlas.episodes, float(rate))]


def _top_cells(mask: np.ndarray, score: np.ndarray, k: int) -> list[Cell]:
    idx = np.argwhere(mask)
    if len(idx) == 0:
        return []
    order = np.argsort(-score[mask], kind="stable")[:k]
    return [(int(idx[i][0]), int(idx[i][1])) for i in order]


def _cell(c: Cell) -> str:
    return f"({c[0]},{c[1]})"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _article(cause: str) -> str:
    return {"hole": "a hole", "deadlock": "a deadlock"}.get(cause, cause)
