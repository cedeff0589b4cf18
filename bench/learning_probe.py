#!/usr/bin/env python3
"""Learning probe: the actor's rollout loop and the learner's Trainer in one process, for fast tuning.

    .venv/bin/python bench/learning_probe.py                                   # `atlasrl up` defaults, seeds 0-2
    .venv/bin/python bench/learning_probe.py --seconds 300 --jobs 2 \\
        --variant ent0.2=learner.entropy_coef=0.2 --variant g8=actor.group_size=8

Every run uses the real pieces of a training run (an env server over loopback gRPC, the actor's
RolloutLoop and Policy with the transformers engine, the learner's Trainer with FSDP2 on gloo) but
none of the processes, queues or staleness around them: episodes are trained on as soon as
``learner.batch_episodes`` of them (whole groups) are in, and the new weights go straight into the
engine. So it measures what a config can learn per update, at ~1 update/s on one core, without the
scheduling noise of `atlasrl up`; confirm a winner with `atlasrl up` (and bench/shaping_ablation.py).

The baseline variant ``default`` is `atlasrl up`'s config (atlasrl.config.RunConfig defaults); a
variant overrides fields of its ``learner``/``actor``/``envserver`` sections (``env.KEY=V`` sets an env
config key; ``model.layers``/``model.hidden`` pick another tiny model). After --seconds of training
each run plays --eval-episodes held-out maps at temperature 1 (as in training) and 0 (greedy).
Each run also reports what a turn cost each side: the actor's batched generate per turn and the learner's update
(with the weight push into the engine) per trained turn, e.g. a VL policy's against the text one's.
Prints a table (one row per run, then mean/min per variant) and ends with one JSON line.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EVAL_SEED_START = 1_000_000_000


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """'name=sec.key=v,sec.key=v' -> (name, {'sec.key': 'v', ...})."""
    name, _, rest = text.partition("=")
    if not name or not rest:
        raise argparse.ArgumentTypeError(f"variant {text!r}: expected NAME=section.key=value[,section.key=value]")
    out = {}
    for item in rest.split(","):
        key, eq, value = item.partition("=")
        if not eq or "." not in key:
            raise argparse.ArgumentTypeError(f"variant {text!r}: {item!r} is not section.key=value")
        out[key] = value
    return name, out


def resolve(overrides: dict[str, str], seed: int):
    """(RunConfig, env_config, tiny-model overrides) for one run: the default preset, as `atlasrl up` runs it."""
    from atlasrl.config import load_config
    from atlasrl.config.schema import TRAIN_SEED_BLOCK

    sets, env_config, model_kw = [f"run.seed={seed}"], {}, {}
    for key, value in overrides.items():
        section, field = key.split(".", 1)
        if section == "env":
            env_config[field] = value
        elif section == "model" and field != "arch":
            model_kw[field] = int(value)
        else:
            sets.append(f"{key}={value}")   # validated like `up --set`: bad values fail here, named
    cfg = load_config(None, sets)
    return cfg, {**cfg.actor.env_config, **env_config}, model_kw, seed * TRAIN_SEED_BLOCK


async def one_run(overrides: dict[str, str], seed: int, seconds: float, eval_episodes: int) -> dict:
    import torch
    import torch.distributed as dist

    from atlasrl.actors.config import ActorConfig
    from atlasrl.actors.engines import EngineConfig, make_engine
    from atlasrl.actors.eval import evaluate
    from atlasrl.actors.policy import Policy
    from atlasrl.actors.rollout import RolloutLoop, env_clients
    from atlasrl.envserver.config import EnvServerConfig
    from atlasrl.envserver.server import EnvServer
    from atlasrl.learner.trainer import TrainBatch, Trainer
    from atlasrl.models.tiny import tiny_model_path
    from atlasrl.up.plan import bare_prompt

    cfg, env_config, model_kw, seed_start = resolve(overrides, seed)
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    dist.init_process_group("gloo", init_method=f"file:///tmp/atlasrl-probe-{os.getpid()}", rank=0, world_size=1)
    model = str(tiny_model_path(cfg.model.arch, **model_kw))
    server = EnvServer(EnvServerConfig(port=0, workers=0))
    await server.start()
    a, lc = cfg.actor, cfg.learner
    actor_cfg = ActorConfig(model=model, envs=[server.address], env_id=a.env_id, env_config=env_config,
                            num_envs=a.num_envs, group_size=a.group_size, action_mode=a.action_mode,
                            memory_hints="none", use_image=cfg.model.arch == "qwen2.5-vl", bare_prompt=bare_prompt(cfg),
                            context_turns=a.context_turns, frame_after_text=a.frame_after_text, seed_start=seed_start)
    engine = make_engine(EngineConfig(model=model, seed=seed))
    # Every training setting `atlasrl up` models (algo, lr and its decay, batch, entropy, step_gamma), not its ports.
    trainer = Trainer(lc.model_copy(update={"model": model, "seed": seed}))
    groups: dict[str, list[tuple[bytes, int]]] = collections.defaultdict(list)   # (episode, its turns)
    ready: list[tuple[bytes, int]] = []
    recent: collections.deque[bool] = collections.deque(maxlen=200)
    env_steps, t0 = 0, time.monotonic()

    # What a turn costs each side (the actor's batched generate, the learner's update per trained turn): the probe
    # runs them one after the other, so the two add up to its wall time and compare text and VL policies directly.
    cost = {"gen_s": 0.0, "gen_turns": 0, "learn_s": 0.0, "learn_turns": 0}

    async def on_episode(proto, ep) -> None:
        nonlocal env_steps
        recent.append(ep.success)
        env_steps += len(proto.turns)
        groups[proto.group_id].append((proto.SerializeToString(), len(proto.turns)))
        if len(groups[proto.group_id]) == proto.group_size:
            ready.extend(groups.pop(proto.group_id))
        if len(ready) >= lc.batch_episodes:
            batch, turns, ready[:] = [b for b, _ in ready], sum(n for _, n in ready), []
            t = time.perf_counter()
            await asyncio.to_thread(trainer.update, TrainBatch(batch, [1.0] * len(batch), [0] * len(batch)))
            engine.update_weights(trainer.version, list(trainer.full_tensors(torch.float32)))
            cost["learn_s"] += time.perf_counter() - t
            cost["learn_turns"] += turns
            if time.monotonic() - t0 > seconds:
                loop.stop()

    policy = Policy(engine, actor_cfg)
    generate = policy.generate

    async def timed_generate(inputs, max_tokens=None):
        t = time.perf_counter()
        out = await generate(inputs, max_tokens=max_tokens)
        cost["gen_s"] += time.perf_counter() - t
        cost["gen_turns"] += len(inputs)
        return out

    policy.generate = timed_generate  # type: ignore[method-assign]  # the probe's timer around the real call
    loop = RolloutLoop(actor_cfg, policy, env_clients([server.address]), on_episode=on_episode)
    await loop.run()
    out = {"seed": seed, "updates": trainer.version, "env_steps": env_steps, "train_success": sum(recent) / max(1, len(recent)),
           "seconds": round(time.monotonic() - t0, 1),
           "gen_ms_per_turn": round(1000 * cost["gen_s"] / max(1, cost["gen_turns"]), 2),
           "learn_ms_per_turn": round(1000 * cost["learn_s"] / max(1, cost["learn_turns"]), 2)}
    for temperature in (1.0, 0.0):
        ecfg = actor_cfg.model_copy(update={"temperature": temperature})
        report = await evaluate(ecfg, Policy(engine, ecfg), env_clients([server.address]), episodes=eval_episodes,
                                seed_start=EVAL_SEED_START)
        out[f"eval_t{temperature:g}"] = round(report.success_rate, 3)
        out[f"causes_t{temperature:g}"] = report.causes
    await server.stop(0)
    dist.destroy_process_group()
    return out


def spawn(name: str, overrides: dict[str, str], seed: int, args) -> subprocess.Popen:
    spec = json.dumps({"name": name, "overrides": overrides, "seed": seed})
    return subprocess.Popen([sys.executable, __file__, "--one", spec, "--seconds", str(args.seconds),
                             "--eval-episodes", str(args.eval_episodes)], stdout=subprocess.PIPE, text=True)


def run_all(variants: dict[str, dict[str, str]], args) -> list[dict]:
    todo = [(n, o, s) for s in args.seeds for n, o in variants.items()]   # interleaved: load drift hits all alike
    running: list[tuple[str, int, subprocess.Popen]] = []
    results = []
    while todo or running:
        while todo and len(running) < args.jobs:
            name, overrides, seed = todo.pop(0)
            running.append((name, seed, spawn(name, overrides, seed, args)))
        name, seed, proc = running.pop(0)
        stdout, _ = proc.communicate()
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        if proc.returncode or not lines:
            raise SystemExit(f"run {name} seed {seed} failed (exit {proc.returncode})")
        results.append({"variant": name, **json.loads(lines[-1])})
        print(row(results[-1]), flush=True)
    return results


HEADER = (f"{'variant':14} {'seed':>4} {'updates':>7} {'env steps':>9} {'train':>5} {'eval T=1':>8} {'eval T=0':>8} "
          f"{'gen ms/turn':>11} {'learn ms/turn':>13}  failures at T=1")


def row(r: dict) -> str:
    fails = ", ".join(f"{k} {v}" for k, v in sorted(r["causes_t1"].items()) if k != "success") or "-"
    return (f"{r['variant']:14} {r['seed']:>4} {r['updates']:>7} {r['env_steps']:>9,} {r['train_success']:>5.2f} "
            f"{r['eval_t1']:>8.3f} {r['eval_t0']:>8.3f} {r['gen_ms_per_turn']:>11.2f} {r['learn_ms_per_turn']:>13.2f}  "
            f"{fails}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=300.0, help="training time per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variant", type=parse_variant, action="append", default=[],
                    help="NAME=section.key=value[,...] compared against the up defaults (repeatable)")
    ap.add_argument("--no-default", action="store_true", help="skip the baseline variant")
    ap.add_argument("--eval-episodes", type=int, default=128)
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (one core each)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        spec = json.loads(args.one)
        print(json.dumps(asyncio.run(one_run(spec["overrides"], spec["seed"], args.seconds, args.eval_episodes))), flush=True)
        return 0
    variants = {} if args.no_default else {"default": {}}
    variants.update(dict(args.variant))
    for overrides in variants.values():
        resolve(overrides, 0)              # a bad key or value fails now, before any run starts
    print(HEADER, flush=True)
    results = run_all(variants, args)
    print()
    print(HEADER)
    for r in results:
        print(row(r))
    summary = {}
    for name in variants:
        t1 = [r["eval_t1"] for r in results if r["variant"] == name]
        summary[name] = {"eval_t1_mean": round(statistics.mean(t1), 3), "eval_t1_min": min(t1), "runs": len(t1)}
        print(f"{name:14} eval T=1 mean {summary[name]['eval_t1_mean']:.3f}, min {min(t1):.3f} over {len(t1)} seeds")
    print(json.dumps({"bench": "learning_probe", "seconds": args.seconds, "variants": variants, "summary": summary,
                      "runs": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
