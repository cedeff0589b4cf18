"""`atlasrl debug memory`: look at what a live memory learned about one layout.

    atlasrl debug memory --addr 127.0.0.1:50055 --env frozenlake --layout 8x8-s3 --save out/

Writes danger.png, affinity.png, overlay.png (on a stored key frame of the layout
when the memory holds one) and exemplar_<i>_<outcome>.png to --save, and prints
the atlas versions, the source of the maps and the text skills.
"""
from __future__ import annotations

from pathlib import Path

import typer


def register(debug_app: typer.Typer) -> None:
    @debug_app.command("memory")
    def memory(
        addr: str = typer.Option("127.0.0.1:50055", help="Memory service address."),
        env: str = typer.Option(..., help="Env family, e.g. frozenlake."),
        layout: str = typer.Option(..., help="Layout key (Observation.layout_key)."),
        save: Path = typer.Option(None, help="Directory for the PNG files (omit to only print)."),
        rows: int = typer.Option(0, help="Grid rows (needed only for layouts the memory never saw)."),
        cols: int = typer.Option(0, help="Grid columns (as --rows)."),
        goal: str = typer.Option(None, help="Goal cell 'row,col' for the family fallback on unseen layouts."),
        top_k: int = typer.Option(4, help="Exemplars to fetch."),
        cell_px: int = typer.Option(32, help="Pixels per cell in the heatmap PNGs."),
    ):
        """Fetch heatmaps, overlay, exemplars and skills of one layout."""
        import grpc
        from PIL import Image

        from atlasrl.atlas_image import heatmap
        from atlasrl.clients.memory import SyncMemoryClient

        goal_cell = tuple(int(x) for x in goal.split(",")) if goal else None
        with SyncMemoryClient(addr, timeout_s=10) as mem:
            try:
                view = mem.query(env, layout, rows=rows, cols=cols, goal=goal_cell, top_k=max(top_k, 16), overlay=True)
                # draw the overlay on a real frame of this layout when the memory holds one
                own = [e for e in view.exemplars if e["layout_key"] == layout]
                if own:
                    view = mem.query(env, layout, rows=rows, cols=cols, goal=goal_cell, top_k=top_k, overlay=True,
                                     frame=own[0]["image"])
                else:
                    view.exemplars = view.exemplars[:top_k]
            except grpc.RpcError as e:
                typer.echo(f"{e.code().name}: {e.details()}", err=True)
                raise typer.Exit(1) from None
        r, c = view.danger.shape
        typer.echo(f"{env}/{layout}: {r}x{c} grid, source={view.source}, layout v{view.layout_version}, "
                   f"family v{view.family_version}, memory v{view.memory_version}")
        typer.echo(f"danger max {view.danger.max():.3f} at {_argmax(view.danger)}; "
                   f"affinity max {view.affinity.max():.3f} at {_argmax(view.affinity)}")
        typer.echo("skills:" if view.skills else "skills: none yet")
        for s in view.skills:
            typer.echo(f"  [{s.kind}, support {s.support}] {s.text}")
        if save is None:
            return
        save.mkdir(parents=True, exist_ok=True)
        Image.fromarray(heatmap(view.danger, (255, 60, 40), cell_px)).save(save / "danger.png")
        Image.fromarray(heatmap(view.affinity, (60, 255, 90), cell_px)).save(save / "affinity.png")
        if view.overlay is not None:
            Image.fromarray(view.overlay).save(save / "overlay.png")
        for i, ex in enumerate(view.exemplars):
            Image.fromarray(ex["image"]).save(save / f"exemplar_{i}_{ex['outcome']}.png")
            typer.echo(f"  exemplar {i}: {ex['caption']}")
        typer.echo(f"wrote PNGs to {save}")


def _argmax(m) -> tuple[int, int]:
    import numpy as np

    r, c = np.unravel_index(int(np.argmax(m)), m.shape)
    return int(r), int(c)
