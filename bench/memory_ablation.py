#!/usr/bin/env python3
"""Memory ablation on a task where memory must matter: FrozenLake with hidden holes and recurring layouts.

    .venv/bin/python bench/memory_ablation.py                                   # text policy, 4 arms x 3 seeds
    .venv/bin/python bench/memory_ablation.py --policy text --policy vl --duration 900
    .venv/bin/python bench/memory_ablation.py --seeds 0 --duration 60 --arm on --arm off   # a smoke run
    .venv/bin/python bench/memory_ablation.py --seeds 0 --eval-only --eval-pool 8   # the trained runs, 16 visits

The task (docs/environments.md): holes look like ice in text and frame (``hidden_holes``), maps come from K
recurring layouts (``layout_pool``), and nothing in the policy's observation names the layout, so the memory's
atlas of the layout is the only way to know where its holes are (the best fixed path is safe on ~1/3 of the
maps: tests/envs/test_frozenlake_memory_tasks.py). Arms, identical but for the memory's view in the prompt
(shaping off in every arm, so only the view differs):

  on       the memory's atlas of this layout (text: a risk word per neighbour line; vl: the overlay image)
  off      no memory view
  placebo  the atlas of another layout (same channel, same tokens, wrong map)
  oracle   the true hole map (shows whether the channel is readable at all)

Each run trains with `atlasrl up` (every role a process; preset frozenlake-tiny plus the overrides above) for
--duration s, then plays --eval-episodes held-out episodes on K *fresh* layouts (another layout_pool_seed),
each layout visited eval_episodes / K times in a row, against a fresh memory that ingests the eval's own
episodes: success by visit number shows what remembering a layout is worth. Reported per arm (seeds pooled):
held-out success on revisited layouts (visit >= 1) with its Wilson interval, and on first visits. Prints a
table, writes bench/results/memory_ablation.json, and ends with one JSON line whose "hidden_holes" maps
policy -> arm -> mean held-out success on revisited layouts.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ARMS = ("on", "off", "placebo", "oracle")
POLICIES = {   # the preset each policy trains from, the observation it reads, and the memory channel it gets
    "text": {"preset": "frozenlake-tiny", "arch": "qwen2", "text_mode": "relative", "channel": ["actor.memory_risk=true"],
             "env": {}},
    # frozenlake-vl's observation (the agent's 3x3 window with position marks, the text only the task and the last
    # move's outcome: docs/results/2026-12-07-frozenlake-vl.md); the overlay is the same window of the atlas.
    "vl": {"preset": "frozenlake-vl", "arch": "qwen2.5-vl", "text_mode": "none", "channel": ["actor.memory_hints=overlay"],
           "env": {"view": "egocentric", "view_radius": "1", "cell_px": "28", "position_marks": "true", "outcome_text": "true"},
           "sets": ["processes.memory=true"]},
}


def env_config(policy: str, args, *, pool: int, pool_seed: int, oracle: bool) -> dict[str, str]:
    cfg = {"text_mode": POLICIES[policy]["text_mode"], "max_actions_per_turn": "1", "hidden_holes": "true",
           "layout_pool": str(pool), "layout_pool_seed": str(pool_seed), "hole_prob": str(args.hole_prob)}
    cfg.update(POLICIES[policy]["env"])
    if oracle:
        cfg["oracle_holes"] = "true"
    return cfg


def arm_overrides(policy: str, arm: str) -> list[str]:
    sets = ["actor.memory_shaping=false"]
    if arm == "off":
        return sets + ["actor.memory_hints=none", "actor.memory_risk=false"]
    source = {"on": "memory", "placebo": "placebo", "oracle": "oracle"}[arm]
    return sets + POLICIES[policy]["channel"] + [f"actor.memory_source={source}"]


def run_config(policy: str, arm: str, seed: int, args, run_dir: Path):
    """The run config of one arm's training run (the same for --eval-only, which re-reads its final model)."""
    from atlasrl.config import load_config

    env = env_config(policy, args, pool=args.pool, pool_seed=args.train_pool_seed, oracle=arm == "oracle")
    overrides = [f"run.seed={seed}", f"run.duration_s={args.duration}", "run.eval_episodes=0", "run.display=false",
                 f"run.run_dir={run_dir}", f"run.name=mem-{policy}-{arm}-{seed}", f"model.arch={POLICIES[policy]['arch']}",
                 f"actor.env_config={json.dumps(env)}", *POLICIES[policy].get("sets", []), *arm_overrides(policy, arm),
                 *args.set]
    return load_config(None, overrides, preset=POLICIES[policy]["preset"])


async def train(policy: str, arm: str, seed: int, args, runs_dir: Path) -> dict:
    from atlasrl.up.run import UpRun

    run_dir = runs_dir / f"{policy}-{arm}-seed{seed}"
    cfg = run_config(policy, arm, seed, args, run_dir)
    if args.eval_only:           # a run trained before: its summary names the final model
        summary = json.loads((run_dir / "summary.json").read_text())
        return {"cfg": cfg, "summary": summary, "train_s": 0.0}
    shutil.rmtree(run_dir, ignore_errors=True)   # a fresh run: an old directory would be resumed
    t0 = time.time()
    summary = await UpRun(cfg).run()
    return {"cfg": cfg, "summary": summary, "train_s": round(time.time() - t0, 1)}


async def held_out(policy: str, arm: str, seed: int, args, cfg, model_dir: str, jsonl: Path | None = None) -> dict:
    """The trained policy on fresh recurring layouts, with a fresh memory that ingests the eval's episodes
    (each episode, its layout, actions and terminal cause, to ``jsonl`` when given)."""
    from atlasrl.actors.actor import build_engine
    from atlasrl.actors.config import resolve_images
    from atlasrl.actors.eval import evaluate
    from atlasrl.actors.memory_hints import MemoryAdvisor
    from atlasrl.actors.policy import Policy
    from atlasrl.actors.rollout import env_clients
    from atlasrl.envserver.config import EnvServerConfig
    from atlasrl.envserver.server import EnvServer
    from atlasrl.memory.server import MemoryServer
    from atlasrl.rpc import ServerConfig
    from atlasrl.up.plan import bare_prompt

    env = EnvServer(EnvServerConfig(port=0, workers=0))
    # The run's own memory settings (atlas statistics, blending), so the held-out memory reads layouts as the
    # training memory did; only where it serves and stores is the eval's own.
    data_dir, pool_seed = None, args.eval_pool_seed + seed
    if args.eval_on_training_memory:   # a diagnosis, not held out: the training layouts and a copy of the run's memory
        data_dir, pool_seed = Path(tempfile.mkdtemp(prefix="atlasrl-mem-")), args.train_pool_seed
        shutil.copytree(Path(cfg.run.run_dir) / "memory", data_dir, dirs_exist_ok=True)
    memory = MemoryServer(cfg.memory.model_copy(update={"server": ServerConfig(port=0), "data_dir": data_dir, "coordinator": None}))
    await env.start()
    await memory.start()
    try:
        actor = cfg.actor.model_copy(update={
            "envs": [env.address], "model": model_dir, "learner": None, "coordinator": None, "group_size": 1,
            "num_envs": min(args.eval_pool, 16), "temperature": args.eval_temperature, "bare_prompt": bare_prompt(cfg),
            "memory": memory.address if arm != "off" else None, "memory_ingest": True, "spool_dir": None,
            "env_config": env_config(policy, args, pool=args.eval_pool, pool_seed=pool_seed,
                                     oracle=arm == "oracle")})
        actor = resolve_images(actor)
        engine = build_engine(actor)
        advisor = MemoryAdvisor.from_config(actor) if actor.memory else None
        try:
            report = await evaluate(actor, Policy(engine, actor), env_clients(actor.envs), episodes=args.eval_episodes,
                                    seed_start=0, memory=advisor, jsonl=jsonl)
        finally:
            if advisor is not None:
                await advisor.close()
            engine.close()
    finally:
        await memory.stop(0)
        await env.stop(0)
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)
    return {"success": report.success_rate, "by_visit": report.by_visit, "causes": report.causes}


def pooled(rows: list[dict], first: bool) -> tuple[int, int]:
    wins = n = 0
    for r in rows:
        for v in r["by_visit"]:
            if (v["visit"] == 0) == first:
                wins, n = wins + v["successes"], n + v["episodes"]
    return wins, n


async def main_async(args) -> dict:
    from atlasrl.actors.eval import wilson_interval

    runs_dir = args.out / "memory_ablation_runs"
    episodes_dir = args.out / "memory_ablation_episodes"     # each held-out episode, one JSONL per run
    episodes_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for policy in args.policy:
        for seed in args.seeds:
            for arm in args.arm:
                trained = await train(policy, arm, seed, args, runs_dir)
                s = trained["summary"]
                model_dir = s.get("final_model")
                if not model_dir:
                    raise SystemExit(f"{policy}/{arm}/seed {seed}: no final model ({s.get('error') or s.get('stop_reason')})")
                ev = await held_out(policy, arm, seed, args, trained["cfg"], model_dir,
                                    jsonl=episodes_dir / f"{policy}-{arm}-seed{seed}.jsonl")
                rows.append({"policy": policy, "arm": arm, "seed": seed, "updates": s.get("policy_version"),
                             "env_steps": (s.get("counters") or {}).get("actor.env_steps", 0),
                             "train_s": trained["train_s"], **ev})
                print(f"{policy:5s} {arm:8s} seed {seed}: held-out {ev['success']:.3f} by visit "
                      f"{[round(v['success_rate'], 2) for v in ev['by_visit']]}; ended by {ev['causes']}", flush=True)
    summary: dict[str, dict] = {}
    print(f"\n{'policy':6s} {'arm':8s} {'revisited':>10s} {'95% CI':>16s} {'first visit':>12s} {'seeds':>6s}")
    for policy in args.policy:
        summary[policy] = {}
        for arm in args.arm:
            mine = [r for r in rows if r["policy"] == policy and r["arm"] == arm]
            wins, n = pooled(mine, first=False)
            fw, fn = pooled(mine, first=True)
            lo, hi = wilson_interval(wins, n)
            rate = wins / n if n else float("nan")
            summary[policy][arm] = {"revisited": rate, "ci": [lo, hi], "first_visit": fw / fn if fn else float("nan"),
                                    "seeds": len(mine), "per_seed": [r["success"] for r in mine]}
            print(f"{policy:6s} {arm:8s} {rate:10.3f} [{lo:.3f}, {hi:.3f}] {summary[policy][arm]['first_visit']:12.3f} "
                  f"{len(mine):6d}")
    return {"rows": rows, "summary": summary}


def plot_by_visit(rows: list[dict], path: Path, title: str) -> None:
    """Held-out success by visit number, one line per policy/arm (seeds pooled), with 95 % Wilson bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from atlasrl.actors.eval import wilson_interval

    fig, ax = plt.subplots(figsize=(7.5, 4))
    for key in dict.fromkeys((r["policy"], r["arm"]) for r in rows):
        mine = [r for r in rows if (r["policy"], r["arm"]) == key]
        visits: dict[int, list[int]] = {}
        for r in mine:
            for v in r["by_visit"]:
                w, n = visits.setdefault(v["visit"], [0, 0])
                visits[v["visit"]] = [w + v["successes"], n + v["episodes"]]
        xs = sorted(visits)
        rates = [visits[x][0] / visits[x][1] for x in xs]
        bands = [wilson_interval(*visits[x]) for x in xs]
        line, = ax.plot(xs, rates, marker=".", label=f"{key[0]} {key[1]} ({len(mine)} seed{'s' * (len(mine) > 1)})")
        ax.fill_between(xs, [b[0] for b in bands], [b[1] for b in bands], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("visit to the held-out layout (0 = first)")
    ax.set_ylabel("held-out success")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", action="append", choices=list(POLICIES), help="text (default) and/or vl")
    ap.add_argument("--arm", action="append", choices=ARMS, help="arms to run (default: all four)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--duration", type=float, default=600.0, help="training seconds per run")
    ap.add_argument("--pool", type=int, default=32, help="recurring layouts K")
    ap.add_argument("--hole-prob", type=float, default=0.3)
    ap.add_argument("--train-pool-seed", type=int, default=0)
    ap.add_argument("--eval-pool-seed", type=int, default=1000, help="held-out layouts: pool seed this + run seed")
    ap.add_argument("--eval-pool", type=int, default=None,
                    help="held-out recurring layouts (default --pool); fewer layouts, more visits each")
    # 32 visits to each of 32 layouts: the memory learns a held-out layout from the eval's own failures, one hole per
    # fall; at 4 visits (128 episodes) it had seen too few to help (seed 0: on 0.32, off 0.25 on revisits), by visit
    # ~11 it knows the layout (on ~0.9, off flat at ~0.27). ~25 s per arm.
    ap.add_argument("--eval-episodes", type=int, default=1024, help="a multiple of --eval-pool: every layout as often")
    ap.add_argument("--eval-only", action="store_true",
                    help="no training: evaluate the final models of runs trained before under --out")
    ap.add_argument("--eval-temperature", type=float, default=1.0)
    ap.add_argument("--eval-on-training-memory", action="store_true",
                    help="with --eval-only, a diagnosis: play the training layouts against a copy of the run's own "
                         "memory (a mature atlas) instead of fresh layouts and a fresh memory")
    ap.add_argument("--set", action="append", default=[], help="extra run-config override for every run")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--plot", type=Path, help="write held-out success by visit number per arm here (PNG)")
    args = ap.parse_args()
    args.policy = args.policy or ["text"]
    args.arm = args.arm or list(ARMS)
    args.eval_pool = args.eval_pool or args.pool
    if args.eval_episodes % args.eval_pool:
        ap.error("--eval-episodes must be a multiple of --eval-pool (every held-out layout visited as often)")
    t0 = time.time()
    result = asyncio.run(main_async(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ("memory_ablation_eval.json" if args.eval_only else "memory_ablation.json")).write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                                **result}, indent=2, default=str) + "\n")
    if args.plot:
        plot_by_visit(result["rows"], args.plot, f"FrozenLake hidden holes, {args.eval_pool} held-out layouts x "
                      f"{args.eval_episodes // args.eval_pool} visits, {args.duration:.0f} s of training per run")
    s = result["summary"]
    print(json.dumps({"bench": "memory_ablation", "seeds": args.seeds, "duration_s": args.duration, "pool": args.pool,
                      "eval_pool": args.eval_pool, "eval_episodes": args.eval_episodes,
                      "wall_s": round(time.time() - t0, 1),
                      "hidden_holes": {p: {a: round(v["revisited"], 3) for a, v in arms.items()} for p, arms in s.items()},
                      "first_visit": {p: {a: round(v["first_visit"], 3) for a, v in arms.items()} for p, arms in s.items()},
                      "per_seed": {p: {a: [round(x, 3) for x in v["per_seed"]] for a, v in arms.items()}
                                   for p, arms in s.items()},
                      "median_seed": {p: {a: statistics.median(v["per_seed"]) if v["per_seed"] else None
                                          for a, v in arms.items()} for p, arms in s.items()}}))


if __name__ == "__main__":
    main()
