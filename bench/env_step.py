"""Hot-path cost of the grid games: step + render, text step, reset (in-process, one core).

    .venv/bin/python bench/env_step.py [--steps 3000] [--image-size 128]

For each game and size it measures, in microseconds per call (median of 5 repeats):
  render       a frame from the pre-drawn sprite atlas, redrawing only changed tiles (what every step pays)
  full         the same frame fully re-composed from the atlas (numpy gather of every tile)
  step+render  Gymnasium ``step(a)`` (one primitive action) including the frame
  text_step    ``text_step("Right")``: parse + step + frame + text + entities (what the server calls)
  reset        draw a new level (FrozenLake map / Sokoban reverse play) and its first frame
and, as baselines measured in the same run on the same recorded states, ``full`` (the
atlas gather of every tile each frame) and ``naive``: the frame drawn with Pillow tile by
tile each time (no atlas), i.e. what a straightforward renderer does.
Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from PIL import Image, ImageDraw

from atlasrl.envserver import registry
from atlasrl.envserver.envs.render import GridRenderer

CASES = [
    ("frozenlake", {"size": "4"}),
    ("frozenlake", {"size": "8"}),
    ("sokoban", {"size": "6", "num_boxes": "1"}),
    ("sokoban", {"size": "10", "num_boxes": "3"}),
]
REPEATS = 5


def per_call_us(fn, calls: int) -> float:
    """Median over REPEATS of the mean time of ``calls`` calls, in microseconds."""
    means = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        means.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(means)


def per_frame_us(render, frames: list[np.ndarray]) -> float:
    """Median over REPEATS of the mean time to render each state of a recorded episode."""
    means = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for codes in frames:
            render(codes)
        means.append((time.perf_counter() - start) / len(frames) * 1e6)
    return statistics.median(means)


def record_states(env, steps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Tile codes along random play (new levels after episode ends), as the renderer sees them."""
    states = []
    for action in rng.integers(4, size=steps):
        if env.terminal_cause is not None:
            env.reset()
        env.step(int(action))
        states.append(env.tile_codes().copy())
    return states


def timed_steps_us(env, step, steps: int, rng: np.random.Generator) -> float:
    """Median over REPEATS of the mean step time; resets between episodes are not timed."""
    means = []
    for _ in range(REPEATS):
        total = 0.0
        for action in rng.integers(4, size=steps):
            if env.terminal_cause is not None:
                env.reset()
            start = time.perf_counter()
            step(int(action))
            total += time.perf_counter() - start
        means.append(total / steps * 1e6)
    return statistics.median(means)


def naive_frame(env, codes: np.ndarray) -> np.ndarray:
    """Baseline: draw every tile with Pillow for each frame (no sprite atlas)."""
    image_size = env.observation_space.shape[0]
    tile = image_size // max(codes.shape)
    top, left = ((image_size - n * tile) // 2 for n in codes.shape)
    canvas = Image.new("RGB", (image_size, image_size), (24, 24, 28))
    for r, row in enumerate(codes):
        for c, code in enumerate(row):
            sprite = Image.new("RGB", (tile, tile))
            env.sprites[int(code)](ImageDraw.Draw(sprite), tile)
            canvas.paste(sprite, (left + c * tile, top + r * tile))
    return np.asarray(canvas)


def bench_case(env_id: str, config: dict[str, str], steps: int, image_size: int) -> dict:
    config = {**config, "image_size": str(image_size), "max_steps": "100000"}
    env = registry.make(env_id, config, seed=0)
    rng = np.random.default_rng(0)
    names = ["Up", "Down", "Left", "Right"]
    states = record_states(env, steps, rng)
    size = int(config["size"])
    incremental = GridRenderer(env.sprites, size, size, image_size)
    full = GridRenderer(env.sprites, size, size, image_size, incremental=False)
    row = {
        "env": env_id, "size": size, "image_size": image_size,
        "render_us": per_frame_us(incremental.frame, states),
        "full_render_us": per_frame_us(full.frame, states),
        "naive_render_us": per_frame_us(lambda codes: naive_frame(env, codes), states[:max(20, steps // 20)]),
        "step_render_us": timed_steps_us(env, lambda a: env.step(a), steps, rng),
        "text_step_us": timed_steps_us(env, lambda a: env.text_step(names[a]), steps, rng),
        "reset_us": per_call_us(env.reset, max(20, steps // 50)),
    }
    row["render_speedup_vs_naive"] = row["naive_render_us"] / row["render_us"]
    row["render_speedup_vs_full"] = row["full_render_us"] / row["render_us"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="calls per repeat")
    parser.add_argument("--image-size", type=int, default=128)
    args = parser.parse_args()
    rows = [bench_case(env_id, config, args.steps, args.image_size) for env_id, config in CASES]
    header = f"{'env':<11}{'size':>5}{'render':>8}{'full':>7}{'naive':>8}{'step+rnd':>10}{'text_step':>11}" \
             f"{'reset':>8}{'vs naive':>10}{'vs full':>9}"
    print(f"µs per call, image {args.image_size}px, median of {REPEATS} repeats")
    print(header)
    for r in rows:
        print(f"{r['env']:<11}{r['size']:>5}{r['render_us']:>8.1f}{r['full_render_us']:>7.1f}"
              f"{r['naive_render_us']:>8.0f}{r['step_render_us']:>10.1f}{r['text_step_us']:>11.1f}"
              f"{r['reset_us']:>8.0f}{r['render_speedup_vs_naive']:>9.0f}x{r['render_speedup_vs_full']:>8.1f}x")
    print(json.dumps({"bench": "env_step", "image_size": args.image_size, "results": rows}))


if __name__ == "__main__":
    main()
