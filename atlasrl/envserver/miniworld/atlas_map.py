"""Memory atlases drawn over a MiniWorld top-down map, so a person sees where agents struggle.

    img = atlas_over_map(env, danger, affinity, size=384)      # env reset to the layout to show
    python -m atlasrl.envserver.miniworld.atlas_map --memory 127.0.0.1:50055 --env miniworld:Hallway \\
        --set turn_step=45 --seed 1000000000 --out atlas.png

The danger (red) and affinity (green) maps cover the env's workspace grid, which is a box inside the top view
(the view pads the floor plan by 1 m and squares it). The command asks a running memory service for the
family's goal-relative atlas projected onto the layout of ``--seed`` (the goal of that layout's episode), and
for that layout's own atlas when the memory has one, and writes them side by side over the map.
"""
from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import numpy as np

from atlasrl.atlas_image import overlay_box


def atlas_over_map(env, danger: np.ndarray, affinity: np.ndarray, size: int = 384, agent: bool = False,
                   crop: bool = False) -> np.ndarray:
    """The top view of ``env``'s current layout with the maps tinted over its workspace grid; ``crop`` keeps the
    grid and a margin of a tenth of the image (the square view of a long hallway is mostly sky)."""
    if danger.shape != (env.grid.rows, env.grid.cols):
        raise ValueError(f"maps of shape {danger.shape} do not match the env's {env.grid.rows}x{env.grid.cols} grid")
    box = env.grid_box(size)
    img = overlay_box(env.top_view(size, agent=agent), danger, affinity, box)
    if crop:
        m = size // 10
        img = img[max(0, box[0] - m):box[1] + m, max(0, box[2] - m):box[3] + m]
    return img


async def _query(address: str, family: str, layout_key: str, rows: int, cols: int, goal):
    from atlasrl.clients.memory import MemoryClient

    async with MemoryClient(address) as mem:
        family_view = await mem.query(family, "unseen-layout", rows=rows, cols=cols, goal=goal)
        try:
            layout_view = await mem.query(family, layout_key)
        except Exception:  # noqa: BLE001 - a layout the memory never saw: the family atlas alone
            layout_view = None
    return family_view, layout_view


def main(argv: list[str] | None = None) -> None:
    from PIL import Image

    from atlasrl.envserver import registry

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--memory", required=True, help="memory service address")
    ap.add_argument("--env", default="miniworld:Hallway")
    ap.add_argument("--set", action="append", default=[], help="env config key=value (as the run's actor.env_config)")
    ap.add_argument("--seed", type=int, default=1_000_000_000, help="the layout to draw on")
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--out", type=Path, default=Path("atlas-miniworld.png"))
    ap.add_argument("--no-crop", dest="crop", action="store_false", help="keep the whole square top view")
    args = ap.parse_args(argv)
    config = dict(kv.split("=", 1) for kv in args.set)
    env = registry.make(args.env, config, seed=args.seed)
    try:
        obs = env.text_reset()
        goal = next((e.cell for e in obs.entities if e.kind == "goal"), None)
        spec = env.spec_info()
        fam, lay = asyncio.run(_query(args.memory, spec.family, obs.layout_key, spec.grid_rows, spec.grid_cols, goal))
        panels = [atlas_over_map(env, fam.danger, fam.affinity, args.size, crop=args.crop)]
        if lay is not None and lay.source in ("layout", "blended"):   # this layout's own episodes
            panels.append(atlas_over_map(env, lay.danger, lay.affinity, args.size, crop=args.crop))
    finally:
        env.close()
    Image.fromarray(np.concatenate(panels, axis=1)).save(args.out)
    print(f"wrote {args.out} ({len(panels)} panel{'s' if len(panels) > 1 else ''}: family atlas"
          f"{' + layout atlas' if len(panels) > 1 else ''}, goal cell {goal})")


if __name__ == "__main__":
    main()
