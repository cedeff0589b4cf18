"""A learning claim over seeds: `atlasrl up --preset P --set run.seed=S` for each seed, then one table, one plot.

    .venv/bin/python bench/seed_runs.py --preset reach-flow --seeds 0,1,2 --target 0.9
    .venv/bin/python bench/seed_runs.py --preset reach-flow --runs runs/reach-flow-A runs/reach-flow-B   # report only
    .venv/bin/python bench/seed_runs.py --preset miniworld-nav --seeds 0,1,2 --set run.duration_s=1200 --target 0.8

Each run is a whole `atlasrl up` (its own coordinator, env server, learner, actor and held-out evals before and
after training on seeds never trained on). The table gives per seed the held-out success before and after with
Wilson 95 % intervals, the training wall time, policy versions and episodes; the plot (``--out``, PNG) the
rolling training success of every seed against wall-clock minutes, from each run's ``progress.jsonl``. Runs go
one after another (each wants the whole machine); the machine's load before and after each is printed, since
figures taken beside other work are not a quiet machine's. Last line: one JSON object, with ``target_met``
when ``--target`` is given (every seed's held-out success after training >= target).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run_seed(preset: str, seed: int, runs_dir: Path, extra: list[str]) -> Path:
    """One `atlasrl up`; returns its run directory (from the summary JSON it prints last)."""
    argv = [str(ROOT / ".venv/bin/atlasrl"), "up", "--preset", preset, "--set", f"run.seed={seed}",
            "--set", f"run.runs_dir={runs_dir}", "--set", "run.display=false"]
    for item in extra:
        argv += ["--set", item]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return Path(json.loads(line)["run_dir"])
    raise SystemExit(f"seed {seed}: atlasrl up exited {proc.returncode} without a summary:\n{proc.stderr[-2000:]}")


def summarize(run_dir: Path) -> dict:
    s = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "progress.jsonl").read_text().splitlines() if line.strip()]
    seed = int(yaml.safe_load((run_dir / "config.yaml").read_text())["run"]["seed"])

    def ev(key):
        e = s.get(key) or {}
        return None if not e else {"success": e["success_rate"], "ci": [round(e["ci_low"], 3), round(e["ci_high"], 3)],
                                    "episodes": e["episodes"]}

    last = rows[-1] if rows else {}
    acc = s.get("accounting") or {}   # the episode ledger: generated = trained + refused + lost + waiting + unsent
    return {"run_dir": str(run_dir), "seed": seed, "before": ev("eval_before"), "after": ev("eval_after"),
            "train_s": last.get("elapsed_s"), "policy_version": s.get("policy_version"),
            "episodes": acc.get("trained"), "ledger": {k: acc.get(k) for k in ("generated", "trained", "refused", "lost",
                                                                                "waiting", "unsent", "balanced")},
            "stop_reason": s.get("stop_reason"),
            # windows of >= 32 finished episodes (the first samples of a run cover a handful)
            "curve": [(r["elapsed_s"], r["success_recent"]) for r in rows
                      if r.get("success_recent") is not None and (r.get("success_window") or 0) >= 32]}


def fmt(e: dict | None) -> str:
    """A held-out eval as 'rate [low, high]' ('-' when it did not run)."""
    return "-" if not e else f"{e['success']:.3f} [{e['ci'][0]:.3f}, {e['ci'][1]:.3f}]"


def plot(results: list[dict], out: Path, title: str, target: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for r in results:
        t, y = zip(*r["curve"]) if r["curve"] else ((), ())
        line, = ax.plot([x / 60 for x in t], y, alpha=0.8, lw=1, label=f"seed {r['seed']} (training, rolling)")
        if r["after"]:
            ax.plot([(r["train_s"] or 0) / 60], [r["after"]["success"]], marker="*", ms=14, color=line.get_color(),
                    label=f"seed {r['seed']} held out after: {r['after']['success']:.3f}")
    if target is not None:
        ax.axhline(target, color="grey", ls="--", lw=1, label=f"target {target}")
    ax.set(xlabel="training wall time (min)", ylabel="success rate", ylim=(-0.02, 1.02), title=title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", required=True)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--runs", nargs="*", type=Path, help="report these finished run directories instead of running")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"))
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="passed to atlasrl up")
    p.add_argument("--target", type=float, default=None, help="held-out success every seed must reach")
    p.add_argument("--out", type=Path, default=None, help="PNG of the training curves (default: <runs-dir>/<preset>-seeds.png)")
    args = p.parse_args()
    loads = []
    if args.runs:
        run_dirs = list(args.runs)
    else:
        run_dirs = []
        for s in (int(x) for x in args.seeds.split(",")):
            before = os.getloadavg()[0]
            run_dirs.append(run_seed(args.preset, s, args.runs_dir.resolve(), args.set))
            loads.append((s, before, os.getloadavg()[0]))
            print(f"seed {s}: {run_dirs[-1]} (load {before:.1f} before, {loads[-1][2]:.1f} after)", flush=True)
    results = [summarize(d) for d in run_dirs]
    print(f"\n{'seed':>4} {'before (held out)':>24} {'after (held out)':>24} {'train s':>8} {'versions':>9} {'trained':>9} {'lost':>5}")
    for r in results:
        print(f"{r['seed']:>4} {fmt(r['before']):>24} {fmt(r['after']):>24} {r['train_s'] or 0:>8.0f} "
              f"{r['policy_version'] or 0:>9} {r['episodes'] or 0:>9} {r['ledger']['lost'] or 0:>5}")
    out = args.out or args.runs_dir / f"{args.preset}-seeds.png"
    plot(results, out, f"{args.preset}: {len(results)} seeds", args.target)
    print(f"plot: {out}")
    summary = {"bench": "seed_runs", "preset": args.preset, "set": args.set, "plot": str(out), "loads": loads,
               "results": [{k: v for k, v in r.items() if k != "curve"} for r in results]}
    if args.target is not None:
        summary["target"] = args.target
        summary["target_met"] = all(r["after"] and r["after"]["success"] >= args.target for r in results)
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
