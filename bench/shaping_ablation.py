#!/usr/bin/env python3
"""Shaping ablation: env steps to reach a training success rate, with vs without skill-memory shaping.

    .venv/bin/python bench/shaping_ablation.py                       # 3 seeds x 2 variants, 600 s each
    .venv/bin/python bench/shaping_ablation.py --seeds 1 --duration 120 --set actor.num_envs=4
    .venv/bin/python bench/shaping_ablation.py --compare shaping --set learner.algo=ppo --name ppo_shaping

Each run is a full `atlasrl up` (every role a process) with ``run.seed = s``; the "without"
variant runs no memory service (no shaping, no hints); with ``--compare shaping`` both variants run the
memory and only ``actor.memory_shaping`` differs (the question for PPO, whose critic lets shaping change the
gradient, while GRPO/GiGPO cancel it: tests/learner/test_shaping_invariance.py). A run stops when its rolling training
success over 64 episodes reaches --target, or at --duration. Reported per run: env steps at the
first window of >= 32 episodes whose success rate reached the target (None = not reached within
the budget), the last rolling success and the wall time. Prints a table, writes
bench/results/<name>.{json,png} (default name: shaping_ablation), and ends with one JSON line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from atlasrl.config import load_config
from atlasrl.up.plots import plot_comparison
from atlasrl.up.progress import curve, from_status, recent_success, steps_to_reach
from atlasrl.up.run import UpRun

COMPARISONS = {
    "memory": {"with memory": ["processes.memory=true"], "without memory": ["processes.memory=false"]},
    "shaping": {"shaping on": ["processes.memory=true", "actor.memory_shaping=true"],
                "shaping off": ["processes.memory=true", "actor.memory_shaping=false"]},
}
VARIANTS = COMPARISONS["memory"]   # replaced by main() from --compare


async def one_run(variant: str, seed: int, args, runs_dir: Path) -> dict:
    run_dir = runs_dir / f"{variant.replace(' ', '-')}-seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)   # a fresh run: an old directory would be resumed
    overrides = [f"run.seed={seed}", f"run.duration_s={args.duration}", f"run.target_success={args.target}",
                 "run.eval_episodes=0", "run.display=false", f"run.run_dir={run_dir}",
                 f"run.name=ablation-{variant.replace(' ', '-')}-{seed}", *VARIANTS[variant], *args.set]
    run = UpRun(load_config(None, overrides))
    t0 = time.time()
    summary = await run.run()
    history = from_status(run.last_status.history) if run.last_status else []
    points = curve(history, min_episodes=32)
    rate, _n = recent_success(history, 64)
    return {"variant": variant, "seed": seed, "steps_to_target": steps_to_reach(points, args.target),
            "final_success": None if rate != rate else round(rate, 3), "episodes": summary.get("counters", {}).get("actor.episodes", 0),
            "env_steps": summary.get("counters", {}).get("actor.env_steps", 0), "wall_s": round(time.time() - t0, 1),
            "load_1m_at_end": round(os.getloadavg()[0], 2),   # other work on the machine slows wall time, not steps
            "stop_reason": summary.get("stop_reason", summary.get("error")), "run_dir": summary["run_dir"],
            "curve": [(p.env_steps, round(p.success_rate, 4)) for p in points]}


def table(results: list[dict], target: float) -> str:
    lines = [f"{'variant':16} {'seed':>4} {'steps to ' + str(target):>14} {'final success':>13} {'env steps':>10} {'wall s':>7}"]
    for r in results:
        reached = "not reached" if r["steps_to_target"] is None else f"{r['steps_to_target']:,}"
        lines.append(f"{r['variant']:16} {r['seed']:>4} {reached:>14} {r['final_success']!s:>13} {r['env_steps']:>10,} {r['wall_s']:>7}")
    for variant in VARIANTS:
        reached = [r["steps_to_target"] for r in results if r["variant"] == variant and r["steps_to_target"] is not None]
        total = sum(1 for r in results if r["variant"] == variant)
        med = f"{statistics.median(reached):,.0f}" if reached else "-"
        lines.append(f"{variant:16} reached {len(reached)}/{total}, median steps {med}")
    return "\n".join(lines)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=600.0, help="budget per run, seconds of training")
    ap.add_argument("--target", type=float, default=0.8)
    ap.add_argument("--set", action="append", default=[], help="config override for every run (repeatable)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--compare", choices=sorted(COMPARISONS), default="memory",
                    help="memory: memory service on vs off; shaping: memory on in both, actor.memory_shaping on vs off")
    ap.add_argument("--name", default="shaping_ablation", help="file name of the results (json, png, run dirs)")
    args = ap.parse_args()
    global VARIANTS
    VARIANTS = COMPARISONS[args.compare]
    args.out.mkdir(parents=True, exist_ok=True)
    runs_dir = args.out / f"{args.name}_runs"
    results = []
    for seed in range(args.seeds):
        for variant in VARIANTS:  # interleaved, so machine load drifts hit both variants alike
            results.append(await one_run(variant, seed, args, runs_dir))
            print(table(results[-1:], args.target).splitlines()[1], flush=True)
    print(table(results, args.target))
    curves = {v: [[_Point(*xy) for xy in r["curve"]] for r in results if r["variant"] == v] for v in VARIANTS}
    png = plot_comparison(curves, args.out / f"{args.name}.png", target=args.target)
    (args.out / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    summary = {v: {"reached": sum(r["steps_to_target"] is not None for r in results if r["variant"] == v),
                   "runs": sum(r["variant"] == v for r in results),
                   "steps_to_target": [r["steps_to_target"] for r in results if r["variant"] == v]} for v in VARIANTS}
    print(json.dumps({"bench": "shaping_ablation", "compare": args.compare, "overrides": args.set, "target": args.target, "duration_s": args.duration, "plot": str(png),
                      "results": summary}))
    return 0


class _Point:
    def __init__(self, env_steps, success_rate):
        self.env_steps, self.success_rate = env_steps, success_rate


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
