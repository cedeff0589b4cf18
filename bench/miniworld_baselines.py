"""Reference success rates on a MiniWorld env: random, two blind policies and a scripted navigator (turn to the goal, walk).

    .venv/bin/python bench/miniworld_baselines.py [--preset miniworld-nav] [--episodes 256] [--seed-start 1000000000]
    .venv/bin/python bench/miniworld_baselines.py --env miniworld:FourRooms --set max_steps=80

The env id and env_config come from the preset's actor section (the same settings `atlasrl up` trains on),
and the seeds default to `up`'s held-out eval seeds (run.eval_seed_start). The scripted navigator reads the
goal's and the agent's world positions from the observation (a policy from pixels sees neither): it shows the
task is solvable within max_steps. Prints a table with Wilson 95% intervals, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np

from atlasrl.actors.eval import wilson_interval
from atlasrl.config.loader import load_config
from atlasrl.envserver import registry


def scripted(obs, goal: tuple[float, float], turn_step: float) -> str:
    x, z = obs.info["position"]
    want = math.degrees(math.atan2(-(goal[1] - z), goal[0] - x))
    diff = (want - obs.info["heading_deg"] + 180) % 360 - 180
    if abs(diff) <= turn_step / 2 + 1:
        return "move forward"
    return "turn left" if diff > 0 else "turn right"


def blind(obs, rng: np.random.Generator) -> str:
    """What a policy gets from the text channel alone (text_mode=none): walk, and turn a random way after a bump."""
    if "bumped" in obs.text:
        return "turn left" if rng.random() < 0.5 else "turn right"
    return "move forward"


def play(env, policy: str, seeds: range, rng: np.random.Generator) -> tuple[int, float]:
    words = env.spec_info().valid_actions
    turn_step = float(env.config.turn_step or 15.0)
    wins, lengths = 0, []
    for seed in seeds:
        obs = env.text_reset(seed=seed)
        goal = next(e.position for e in obs.entities if e.kind == "goal")
        while not (obs.terminated or obs.truncated):
            if policy == "random":
                action = words[rng.integers(len(words))]
            elif policy == "forward":
                action = "move forward"
            elif policy == "blind":
                action = blind(obs, rng)
            else:
                action = scripted(obs, goal, turn_step)
            obs = env.text_step(action)
        wins += obs.success
        lengths.append(obs.step)
    return wins, float(np.mean(lengths))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="miniworld-nav")
    ap.add_argument("--episodes", type=int, default=256)
    ap.add_argument("--env", default=None, help="env id instead of the preset's (e.g. miniworld:FourRooms)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="env_config entry over the preset's (e.g. max_steps=80; repeatable)")
    ap.add_argument("--seed-start", type=int, default=None, help="first seed (default: the preset's run.eval_seed_start)")
    args = ap.parse_args()
    cfg = load_config(preset=args.preset)
    env_id, env_config = args.env or cfg.actor.env_id, dict(cfg.actor.env_config)
    for item in args.set:
        key, _, value = item.partition("=")
        env_config[key] = value
    start = cfg.run.eval_seed_start if args.seed_start is None else args.seed_start
    seeds = range(start, start + args.episodes)
    env = registry.make(env_id, env_config)
    rows = {}
    # forward / blind: what needs no pixels (always walk; walk and turn at random after a bump, from the text).
    # A pixel policy that ends near them has learned to walk, not to look.
    for policy in ("random", "forward", "blind", "scripted"):
        wins, mean_len = play(env, policy, seeds, np.random.default_rng(0))
        rows[policy] = {"success": wins / args.episodes, "wilson95": [round(v, 3) for v in wilson_interval(wins, args.episodes)],
                        "mean_steps": round(mean_len, 1)}
    env.close()
    print(f"{env_id} {env_config}, {args.episodes} episodes on seeds {start}.., 1-min load {os.getloadavg()[0]:.2f}")
    print(f"{'policy':<10} {'success':>8} {'95% interval':>16} {'mean steps':>11}")
    for policy, r in rows.items():
        lo, hi = r["wilson95"]
        print(f"{policy:<10} {r['success']:8.3f} {f'[{lo:.2f}, {hi:.2f}]':>16} {r['mean_steps']:11.1f}")
    print(json.dumps({"bench": "miniworld_baselines", "env_id": env_id, "env_config": env_config,
                      "episodes": args.episodes, "seed_start": start, **rows}))


if __name__ == "__main__":
    main()
