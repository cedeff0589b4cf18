"""PNGs of the skill memory's final atlases (danger and affinity heatmaps), read over gRPC before memory stops."""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("atlasrl.up")


async def save_atlas_pngs(memory_address: str, out_dir: Path, max_layouts: int = 6, channel_config=None) -> list[Path]:
    """One PNG per family: the most-visited layout atlases plus the family (goal-relative) atlas
    projected onto a layout with the goal in the bottom-right corner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from atlasrl.clients.memory import MemoryClient

    written: list[Path] = []
    async with MemoryClient(memory_address, channel_config=channel_config) as mem:
        stats = await mem.stats()
        families = sorted({a.family for a in stats.atlases})
        for family in families:
            layouts = sorted((a for a in stats.atlases if a.family == family and a.layout_key),
                             key=lambda a: a.episodes, reverse=True)[:max_layouts]
            if not layouts:
                continue
            views = []
            for a in layouts:
                v = await mem.query(family, a.layout_key)
                views.append((f"layout {a.layout_key[:8]}: {a.episodes} ep, {a.successes} won", v))
            rows, cols = layouts[0].rows, layouts[0].cols
            try:
                v = await mem.query(family, "unseen-layout", rows=rows, cols=cols, goal=(rows - 1, cols - 1))
                views.append((f"family atlas, goal at ({rows - 1},{cols - 1})", v))
            except Exception as e:  # noqa: BLE001 - the family atlas is optional in the figure
                log.info("family atlas of %s unavailable: %s", family, e)
            fig, axes = plt.subplots(len(views), 2, figsize=(5, 2.3 * len(views)), squeeze=False)
            for (title, v), (ax_d, ax_a) in zip(views, axes):
                ax_d.imshow(v.danger, cmap="Reds", vmin=0, vmax=1)
                ax_a.imshow(v.affinity, cmap="Greens", vmin=0, vmax=1)
                ax_d.set_title(f"danger · {title}", fontsize=7)
                ax_a.set_title("affinity", fontsize=7)
                for ax in (ax_d, ax_a):
                    ax.set_xticks([])
                    ax.set_yticks([])
            fig.suptitle(f"{family}: memory v{stats.memory_version}, {stats.episodes_ingested} episodes", fontsize=9)
            fig.tight_layout()
            path = out_dir / f"atlas-{family.replace(':', '_').replace('/', '_')}.png"
            out_dir.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    return written
