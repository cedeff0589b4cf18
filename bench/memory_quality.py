"""Does the danger atlas find the holes, and does affinity follow the way to the goal?

FrozenLake 8x8 (non-slippery, random solvable maps) played through a real env
server with an exploratory random policy; every finished episode is ingested
into a real memory server over gRPC. At checkpoints the bench queries the
layout's maps and reports, averaged over layouts:

- precision@k of the danger atlas on the true holes, k = number of holes the
  policy ever entered (a hole never entered cannot be known), and with k = all
  holes; against baselines measured in the same run: a random ranking
  (expected precision = holes / cells), ranking cells by visit count, and
  ranking them by how many failed episodes ended there (a direct count);
- mean affinity on a BFS shortest path start -> goal vs on visited free cells
  off that path (the ratio should be well above 1);
- transfer: the same ratio on an unseen layout from the goal-relative family
  atlas alone (Query falls back to it).

Policy: with probability epsilon a uniform random action, otherwise the move
towards the least-visited neighbour cell (counts over all episodes of the
layout, ties at random) among those its own earlier episodes did not die on.
It never sees the map, and never reads the memory.

    .venv/bin/python bench/memory_quality.py --episodes 600 --layouts 3 --out runs/bench/memory_quality

Prints a table and one JSON line; writes heatmaps and overlays as PNG.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from atlasrl.clients.env import EnvClient
from atlasrl.clients.memory import MemoryClient
from atlasrl.envserver.config import EnvServerConfig
from atlasrl.envserver.server import EnvServer
from atlasrl.memory.config import MemoryConfig
from atlasrl.memory.server import MemoryServer
from atlasrl.rpc import ServerConfig
from atlasrl.v1 import memory_pb2

MOVES = {"Up": (-1, 0), "Down": (1, 0), "Left": (0, -1), "Right": (0, 1)}


class Explorer:
    """epsilon-uniform, else towards the least-visited neighbour it has not died on (never sees holes or the goal)."""

    def __init__(self, size: int, epsilon: float, rng: np.random.Generator):
        self.size, self.epsilon, self.rng = size, epsilon, rng
        self.counts = np.zeros((size, size))
        self.died_on: set[tuple[int, int]] = set()  # cells where its own episodes ended in a hole
        self.fail_ends = np.zeros((size, size))        # failed episodes ending on each cell (a baseline ranking)

    def act(self, cell: tuple[int, int]) -> str:
        self.counts[cell] += 1
        names = list(MOVES)
        if self.rng.random() < self.epsilon:
            return names[self.rng.integers(len(names))]
        options = []
        for name, (dr, dc) in MOVES.items():
            r, c = cell[0] + dr, cell[1] + dc
            if 0 <= r < self.size and 0 <= c < self.size and (r, c) not in self.died_on:
                options.append((self.counts[r, c] + self.rng.random() * 0.5, name))
        return min(options)[1] if options else names[self.rng.integers(len(names))]


def shortest_path(holes: set, size: int, start=(0, 0), goal=None) -> list[tuple[int, int]]:
    goal = goal or (size - 1, size - 1)
    prev, todo = {start: None}, deque([start])
    while todo:
        cur = todo.popleft()
        if cur == goal:
            break
        for dr, dc in MOVES.values():
            nxt = (cur[0] + dr, cur[1] + dc)
            if 0 <= nxt[0] < size and 0 <= nxt[1] < size and nxt not in holes and nxt not in prev:
                prev[nxt] = cur
                todo.append(nxt)
    path, cur = [], goal
    while cur is not None:
        path.append(cur)
        cur = prev[cur]
    return path[::-1]


async def play_layout(envs: EnvClient, mem: MemoryClient, seed: int, episodes: int, parallel: int, size: int,
                      epsilon: float, checkpoints: list[int], on_checkpoint) -> dict:
    """Play `episodes` episodes of the layout drawn by `seed`, `parallel` envs at a time."""
    handles = [(await envs.open("frozenlake", {"size": str(size), "max_steps": str(6 * size)}, seed=seed))[0]
               for _ in range(parallel)]
    explorer = Explorer(size, epsilon, np.random.default_rng(seed))
    entered = np.zeros((size, size), bool)
    done_count, started, ingest_q = 0, 0, []
    first_obs = None
    layout = ""

    async def run_one(h: int):
        nonlocal done_count, first_obs, layout
        obs = await envs.reset(h, seed=seed)  # same seed -> same map
        first_obs = first_obs or obs
        layout = obs.layout_key
        cells, frames = [obs.agent], []
        while not obs.done:
            obs = await envs.step_one(h, explorer.act(obs.agent))
            cells.append(obs.agent)
            entered[obs.agent] = True
        if obs.info.get("terminal_cause") == "hole":
            explorer.died_on.add(obs.agent)
        if not obs.success:
            explorer.fail_ends[obs.agent] += 1
        frames.append((len(cells) - 1, obs.images[0]))
        rec = memory_pb2.EpisodeRecord(family="frozenlake", layout_key=obs.layout_key, grid_rows=size, grid_cols=size,
                                       success=obs.success, truncated=obs.truncated,
                                       terminal_cause=str(obs.info.get("terminal_cause", "")),
                                       entities=list(first_obs.entities))
        for c in cells:
            rec.steps.add().agent.CopyFrom(_coord(c))
        rec.key_frames.add(step=frames[0][0], image=obs.proto.images[0])
        ingest_q.append(rec)
        done_count += 1

    next_cp = 0
    while started < episodes:
        batch = min(parallel, episodes - started)
        await asyncio.gather(*(run_one(handles[i]) for i in range(batch)))
        started += batch
        summary = await mem.ingest(ingest_q)
        assert not summary.rejected, summary.rejected
        ingest_q.clear()
        while next_cp < len(checkpoints) and done_count >= checkpoints[next_cp]:
            await on_checkpoint(checkpoints[next_cp], layout, first_obs, explorer, entered)
            next_cp += 1
    await envs.close(handles)
    return {"layout": layout, "first_obs": first_obs, "visits": explorer.counts, "entered": entered}


def _coord(c):
    from atlasrl.v1 import env_pb2

    return env_pb2.GridCoord(row=int(c[0]), col=int(c[1]))


def precision_at_k(scores: np.ndarray, truth: set, k: int) -> float:
    if k == 0:
        return float("nan")
    order = np.argsort(-scores.ravel(), kind="stable")[:k]
    cols = scores.shape[1]
    return sum((int(i) // cols, int(i) % cols) in truth for i in order) / k


def evaluate(view, holes: set, visits: np.ndarray, entered: np.ndarray, size: int, rng,
             fail_ends: np.ndarray | None = None) -> dict:
    entered_holes = {h for h in holes if entered[h]}
    k_seen, k_all = len(entered_holes), len(holes)
    path = shortest_path(holes, size)
    on = np.array([view.affinity[c] for c in path])
    off_cells = [(r, c) for r in range(size) for c in range(size)
                 if (r, c) not in holes and (r, c) not in path and visits[r, c] > 0]
    off = np.array([view.affinity[c] for c in off_cells]) if off_cells else np.zeros(1)
    noise = rng.random(visits.shape) * 1e-6  # tie-break for the baselines
    return {
        "holes": k_all, "holes_entered": k_seen,
        "p_at_k_entered": precision_at_k(view.danger, entered_holes, k_seen),
        "p_at_k_all": precision_at_k(view.danger, holes, k_all),
        "baseline_random": k_all / (size * size),
        "baseline_visits_p_at_k_all": precision_at_k(visits + noise, holes, k_all),
        "baseline_fail_ends_p_at_k_all": precision_at_k((fail_ends if fail_ends is not None else visits * 0) + noise,
                                                        holes, k_all),
        "affinity_on_path": float(on.mean()), "affinity_off_path": float(off.mean()),
        "path_ratio": float(on.mean() / max(off.mean(), 1e-9)),
        "path_len": len(path),
    }


def save_pngs(out: Path, tag: str, view, frame) -> None:
    from PIL import Image

    from atlasrl.atlas_image import heatmap, overlay

    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(heatmap(view.danger, (255, 60, 40))).save(out / f"{tag}_danger.png")
    Image.fromarray(heatmap(view.affinity, (60, 255, 90))).save(out / f"{tag}_affinity.png")
    Image.fromarray(overlay(frame, view.danger, view.affinity)).save(out / f"{tag}_overlay.png")
    Image.fromarray(frame).save(out / f"{tag}_frame.png")


async def main(args) -> dict:
    env_server = EnvServer(EnvServerConfig(port=0, workers=0, threads=2, envs=["frozenlake"]))
    mem_server = None if args.memory else MemoryServer(MemoryConfig(server=ServerConfig(port=0)))
    await env_server.start()
    if mem_server is not None:
        await mem_server.start()
    mem_address = args.memory or mem_server.address
    rng = np.random.default_rng(0)
    rows: dict[int, list[dict]] = {cp: [] for cp in args.checkpoints}
    results, t0 = [], time.perf_counter()
    try:
        async with EnvClient(env_server.address) as envs, MemoryClient(mem_address) as mem:
            for li in range(args.layouts):
                seed = args.seed + li

                async def checkpoint(n, layout, first_obs, explorer, entered):
                    holes = {(e.cell.row, e.cell.col) for e in first_obs.entities if e.kind == "hole"}
                    view = await mem.query("frozenlake", layout)
                    rows[n].append(evaluate(view, holes, explorer.counts, entered, args.size, rng, explorer.fail_ends))
                    if n == args.checkpoints[-1]:
                        save_pngs(args.out, f"layout{li}", view, first_obs.images[0])  # noqa: B023 - play_layout is awaited within this iteration

                print(f"layout {li}: seed {seed}", flush=True)
                results.append(await play_layout(envs, mem, seed, args.episodes, args.parallel, args.size,
                                                 args.epsilon, args.checkpoints, checkpoint))
            # transfer: an unseen layout, maps from the goal-relative family atlas only
            h, _ = await envs.open("frozenlake", {"size": str(args.size)}, seed=args.seed + 1000)
            obs = await envs.reset(h, seed=args.seed + 1000)
            holes = {(e.cell.row, e.cell.col) for e in obs.entities if e.kind == "hole"}
            view = await mem.query("frozenlake", obs.layout_key, rows=args.size, cols=args.size,
                                   goal=(args.size - 1, args.size - 1))
            free_visits = np.ones((args.size, args.size))
            transfer = evaluate(view, holes, free_visits, np.zeros_like(free_visits, bool), args.size, rng)
            transfer["source"] = view.source
            save_pngs(args.out, "unseen_family_fallback", view, obs.images[0])
            stats = await mem.stats()
    finally:
        if mem_server is not None:
            await mem_server.stop(0)
        await env_server.stop(0)
    elapsed = time.perf_counter() - t0

    def mean(key, cp):
        vals = [r[key] for r in rows[cp] if not np.isnan(r[key])]
        return float(np.mean(vals)) if vals else float("nan")

    keys = ["p_at_k_entered", "p_at_k_all", "baseline_fail_ends_p_at_k_all", "baseline_visits_p_at_k_all",
            "baseline_random", "affinity_on_path",
            "affinity_off_path", "path_ratio", "holes_entered", "holes"]
    print(f"FrozenLake {args.size}x{args.size}, {args.layouts} layouts, epsilon={args.epsilon}; "
          f"{stats.episodes_ingested} episodes in {elapsed:.1f}s; means over layouts")
    labels = ["P@k entered", "P@k all", "ends P@k", "visits P@k", "random P@k", "A on path", "A off path", "path ratio",
              "holes hit", "holes"]
    print(f"{'episodes':>9} " + " ".join(f"{lab:>11}" for lab in labels))
    table = {}
    for cp in args.checkpoints:
        table[cp] = {k: mean(k, cp) for k in keys}
        print(f"{cp:>9} " + " ".join(f"{table[cp][k]:>11.3f}" for k in keys))
    succ = sum(a.successes for a in stats.atlases if a.layout_key)
    print(f"transfer to an unseen layout (source={transfer['source']}): affinity on path {transfer['affinity_on_path']:.3f} "
          f"vs off path {transfer['affinity_off_path']:.3f} (ratio {transfer['path_ratio']:.2f})")
    print(f"successful episodes: {succ} of {stats.episodes_ingested}; PNGs in {args.out}")
    final = table[args.checkpoints[-1]]
    summary = {"bench": "memory_quality", "size": args.size, "layouts": args.layouts, "episodes_per_layout": args.episodes,
               "successes": succ, "final": final, "by_checkpoint": {str(k): v for k, v in table.items()},
               "transfer": {k: v for k, v in transfer.items() if k in ("affinity_on_path", "affinity_off_path", "path_ratio", "source")},
               "seconds": round(elapsed, 2), "png_dir": str(args.out)}
    print(json.dumps(summary))
    return summary


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=600, help="episodes per layout")
    p.add_argument("--layouts", type=int, default=3, help="distinct maps (seeds)")
    p.add_argument("--size", type=int, default=8)
    p.add_argument("--parallel", type=int, default=8, help="envs stepped concurrently")
    p.add_argument("--epsilon", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--checkpoints", type=str, default="8,24,56,152,304,600")
    p.add_argument("--memory", default="", help="address of a running memory (default: start one in-process; "
                   "a running one must be empty, e.g. to look at it with `atlasrl debug memory` afterwards)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "memory_quality")
    args = p.parse_args(argv)
    args.checkpoints = sorted(int(x) for x in args.checkpoints.split(",") if int(x) <= args.episodes) or [args.episodes]
    if args.checkpoints[-1] != args.episodes:
        args.checkpoints.append(args.episodes)
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
