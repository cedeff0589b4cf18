"""The whole memory: layout and family atlases, exemplars, versions, dedup window.

    state = MemoryState(cfg)
    state.check(ep); applied = state.apply(ep)      # check never mutates; apply is all-or-nothing
    view = state.view("frozenlake", "8x8-s3", rows=8, cols=8, goal=(7, 7))
    state.skills("frozenlake", "8x8-s3")

Plain synchronous code: the service calls it from one event-loop thread and never
awaits inside a call, so each episode is applied atomically with respect to
concurrent streams. Versions only grow: every applied episode bumps the global
version and the versions of the atlases it touched; an atlas re-created after a
Reset continues from the version it was dropped at. Across crashes: versions are
handed out from blocks reserved on disk first (``reserve``); a restart after a
crash resumes above the reserved bound (``skip_versions``), so no version number
is ever reused for different content, even for episodes lost with the crash.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from atlasrl.memory.atlas import Atlas, family_shape, to_offsets
from atlasrl.memory.config import MemoryConfig
from atlasrl.memory.episode import Cell, Episode
from atlasrl.memory.errors import MemoryInputError, UnknownFamily
from atlasrl.memory.exemplars import ExemplarBank
from atlasrl.memory.shaping import LayoutView, layout_view
from atlasrl.memory.skills import Skill, family_skills, layout_skills

LayoutKey = tuple[str, str]


class MemoryState:
    def __init__(self, cfg: MemoryConfig):
        self.cfg = cfg
        self.layouts: dict[LayoutKey, Atlas] = {}
        self.families: dict[str, Atlas] = {}
        self.bank = ExemplarBank(cfg.exemplars)
        self.version = 0
        self.episodes_ingested = 0
        self.recent_ids: OrderedDict[str, None] = OrderedDict()
        self.retired_versions: dict[str, int] = {}     # "family" / "family\x00layout" -> version at reset
        self._skills_cache: dict[LayoutKey, tuple[tuple[int, int, int], list[Skill]]] = {}
        self._view_cache: dict[tuple, tuple[tuple[int, int], LayoutView]] = {}  # maps change only with versions
        self.reserved_version = 0      # versions up to this one are reserved on disk (crash safety, see reserve())
        self.on_reserve: Callable[[int], None] | None = None         # callback(new_reserved_version), called before a version past it is used

    # -- ingest ------------------------------------------------------------------

    def is_duplicate(self, episode_id: str) -> bool:
        return bool(episode_id) and episode_id in self.recent_ids

    def check(self, ep: Episode) -> None:
        """Consistency with what is stored (raises MemoryInputError; never mutates)."""
        atlas = self.layouts.get((ep.family, ep.layout_key))
        if atlas is not None and (atlas.rows, atlas.cols) != (ep.rows, ep.cols):
            raise MemoryInputError(
                f"episode '{ep.episode_id}': layout '{ep.layout_key}' of family '{ep.family}' has a "
                f"{atlas.rows}x{atlas.cols} grid in memory but the episode says {ep.rows}x{ep.cols}")

    def apply(self, ep: Episode) -> bool:
        """Apply a validated episode; False (and no change) for a duplicate id."""
        if self.is_duplicate(ep.episode_id):
            return False
        self.check(ep)
        acfg = self.cfg.atlas
        layout = self._layout_atlas(ep.family, ep.layout_key, ep.rows, ep.cols)
        layout.goal = ep.goal if ep.goal is not None else layout.goal
        if ep.statics:
            statics: dict[str, list[Cell]] = {}
            for kind, cell in ep.statics:
                statics.setdefault(kind, []).append(cell)
            layout.statics = statics
        layout.add_episode(ep.agent, ep.success, ep.cause, acfg, ep.final_entities)
        if ep.goal is not None:
            family = self._family_atlas(ep.family, *family_shape(ep.rows, ep.cols))
            cells = to_offsets(ep.agent, ep.goal, family.rows, family.cols)
            ents = [(k, tuple(int(x) for x in to_offsets(np.array([c]), ep.goal, family.rows, family.cols)[0]))
                    for k, c in ep.final_entities]
            family.add_episode(cells, ep.success, ep.cause, acfg, ents)
        outcome = "success" if ep.success else "failure"
        for step, frame in ep.frames:
            r, c = (int(x) for x in ep.agent[step])
            ending = "succeeded" if ep.success else f"ended in {ep.cause}"
            caption = (f"{ep.family} layout {ep.layout_key}: step {step} of {ep.length}, agent at ({r},{c}); "
                       f"the episode {ending}")
            self.bank.add(ep.family, self.bank.make(frame, caption=caption, outcome=outcome, cause=ep.cause,
                                                    layout_key=ep.layout_key, episode_id=ep.episode_id))
        if ep.episode_id and self.cfg.limits.dedup_window > 0:
            self.recent_ids[ep.episode_id] = None
            while len(self.recent_ids) > self.cfg.limits.dedup_window:
                self.recent_ids.popitem(last=False)
        self.episodes_ingested += 1
        self._bump()
        return True

    def _bump(self) -> None:
        self.version += 1
        if self.on_reserve is not None and self.version > self.reserved_version:
            self.reserve()

    def reserve(self, block: int | None = None) -> None:
        """Reserve the next block of versions (the callback persists the bound before any is handed out)."""
        self.reserved_version = self.version + (block or self.cfg.version_reserve_block)
        if self.on_reserve is not None:
            self.on_reserve(self.reserved_version)

    def skip_versions(self, to_version: int) -> None:
        """Resume after a crash above every version handed out before it: global and per-atlas versions jump."""
        offset = to_version - self.version
        if offset <= 0:
            return
        self.version = to_version
        for atlas in [*self.layouts.values(), *self.families.values()]:
            atlas.version += offset
        self.retired_versions = {k: v + offset for k, v in self.retired_versions.items()}
        self._skills_cache.clear()
        self._view_cache.clear()

    def _layout_atlas(self, family: str, layout_key: str, rows: int, cols: int) -> Atlas:
        atlas = self.layouts.get((family, layout_key))
        if atlas is None:
            atlas = self.layouts[(family, layout_key)] = Atlas(rows, cols)
            atlas.version = self.retired_versions.get(f"{family}\x00{layout_key}", 0)
        return atlas

    def _family_atlas(self, family: str, rows: int, cols: int) -> Atlas:
        atlas = self.families.get(family)
        if atlas is None:
            atlas = self.families[family] = Atlas(rows, cols)
            atlas.version = self.retired_versions.get(family, 0)
        atlas.grow(rows, cols)
        return atlas

    # -- read --------------------------------------------------------------------

    def knows_family(self, family: str) -> bool:
        return family in self.families or any(f == family for f, _ in self.layouts)

    def view(self, family: str, layout_key: str, rows: int = 0, cols: int = 0, goal: Cell | None = None) -> LayoutView:
        """Maps for one layout (see shaping.layout_view). Raises UnknownFamily / MemoryInputError."""
        if not self.knows_family(family):
            known = ", ".join(sorted({f for f, _ in self.layouts})) or "none"
            raise UnknownFamily(f"unknown family '{family}': the memory has no episodes of it (known: {known})")
        layout = self.layouts.get((family, layout_key))
        if layout is not None:
            if (rows or layout.rows, cols or layout.cols) != (layout.rows, layout.cols):
                raise MemoryInputError(f"layout '{layout_key}' has a {layout.rows}x{layout.cols} grid; the request says {rows}x{cols}")
            rows, cols = layout.rows, layout.cols
        elif rows <= 0 or cols <= 0:
            raise MemoryInputError(f"layout '{layout_key}' of family '{family}' was never seen: grid_rows and grid_cols are required")
        elif max(rows, cols) > self.cfg.limits.max_grid_side:
            raise MemoryInputError(f"grid {rows}x{cols} exceeds max_grid_side {self.cfg.limits.max_grid_side}")
        if goal is not None and not (0 <= goal[0] < rows and 0 <= goal[1] < cols):
            raise MemoryInputError(f"goal cell ({goal[0]},{goal[1]}) is outside the {rows}x{cols} grid")
        fam = self.families.get(family)
        key = (family, layout_key, rows, cols, goal)
        versions = (layout.version if layout else -1, fam.version if fam else -1)
        cached = self._view_cache.get(key)
        if cached is not None and cached[0] == versions:
            return cached[1]
        if len(self._view_cache) >= 4096:
            self._view_cache.clear()
        view = layout_view(layout, fam, rows, cols, goal, self.cfg.shaping.layout_trust_episodes)
        self._view_cache[key] = (versions, view)
        return view

    def skills(self, family: str, layout_key: str) -> list[Skill]:
        """Layout rules then family rules, regenerated only when either atlas version changed."""
        layout, fam = self.layouts.get((family, layout_key)), self.families.get(family)
        layouts = sum(1 for f, _ in self.layouts if f == family)
        versions = (layout.version if layout else -1, fam.version if fam else -1, layouts)
        cached = self._skills_cache.get((family, layout_key))
        if cached and cached[0] == versions:
            return cached[1]
        rules = (layout_skills(layout, self.cfg.skills) if layout else []) + \
                (family_skills(family, fam, self.cfg.skills, layouts) if fam else [])
        self._skills_cache[(family, layout_key)] = (versions, rules)
        return rules

    # -- admin -------------------------------------------------------------------

    def reset(self, family: str = "", layout_key: str = "") -> tuple[int, int]:
        """Forget a layout, a family or everything; returns (atlases removed, exemplars removed)."""
        removed = 0
        for key in [k for k in self.layouts if (not family or k[0] == family) and (not layout_key or k[1] == layout_key)]:
            self.retired_versions[f"{key[0]}\x00{key[1]}"] = self.layouts.pop(key).version
            removed += 1
        if not layout_key:
            for name in [f for f in self.families if not family or f == family]:
                self.retired_versions[name] = self.families.pop(name).version
                removed += 1
        frames = self.bank.remove(family or None, layout_key or None)
        self._skills_cache.clear()
        self._view_cache.clear()
        self._bump()
        return removed, frames
