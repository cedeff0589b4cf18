"""ManiSkill through the env server vs the plain in-process gym loop (one env per mode, one step in flight).

    .venv/bin/python bench/maniskill_throughput.py [--task PickCube-v1] [--steps 120] [--rounds 4] [--image-size 128]
    .venv/bin/python bench/maniskill_throughput.py --only-chunks --chunk 4 --execute 1,2,4   # render at decision

Modes, all with random actions on the same task, camera and resolution:
  gym        mani_skill's own loop: env.step(action) with obs_mode="rgb" (the baseline)
  textenv    atlasrl's ManiSkillEnv in-process: text -> codec -> step -> observation assembly
  server     EnvClient -> gRPC loopback -> env server, env on the server's thread pool
  server-p   the same with the env in a worker process (--workers 1: the per-GPU layout)
All four envs are built first; then the modes run in interleaved blocks
(``--rounds`` rounds of steps/rounds each), so load drifting on a shared machine
hits every mode alike. Prints steps/s, the ratio to gym and ms/step, bytes per
step (raw image bytes vs the serialized Observation on the wire), then one JSON line.

Render at decision (``--chunk H``, on by default with H=4): one env server, envs
opened with ``action_chunk=H`` and each ``execute_steps`` k of ``--execute``, once with
``render=every_step`` (the cameras rendered after every physics step, all but the
last frame thrown away) and once with ``render=decision`` (physics only between
decisions, one frame per decision). Each decision is one random valid H-step chunk
through EnvClient; the table gives env (physics) steps/s, decisions/s and the
speedup of decision over every_step at the same k. The load average is printed:
on a shared machine the figures move with it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import numpy as np
from interleave import interleaved_seconds  # bench/interleave.py (the script's directory is on sys.path)


def make_gym(task: str, size: int):
    import gymnasium as gym
    import mani_skill.envs  # noqa: F401 - registers the tasks

    env = gym.make(task, obs_mode="rgb", control_mode="pd_ee_delta_pose", reward_mode="normalized_dense",
                   sensor_configs=dict(width=size, height=size), num_envs=1, render_backend="cpu",
                   max_episode_steps=1_000_000)
    env.reset(seed=0)
    env.action_space.seed(0)

    async def block(n: int) -> None:
        for _ in range(n):
            obs, *_ = env.step(env.action_space.sample())
            obs["sensor_data"]["base_camera"]["rgb"].numpy()  # the frame as numpy, like every other mode
    return block, env.close


def make_textenv(task: str, size: int):
    from atlasrl.envserver.maniskill import make_env

    env = make_env({"image_size": str(size), "max_steps": "100000"}, 0, f"maniskill:{task}")
    env.text_reset()
    rng = np.random.default_rng(0)

    async def block(n: int) -> None:
        for _ in range(n):
            env.text_step(env.codec.sample_text(rng))
    return block, env.close


async def make_server(task: str, size: int, workers: int, wire: list[int], sizes: dict):
    from atlasrl.action_codec import ActionCodec
    from atlasrl.clients.env import EnvClient
    from atlasrl.envserver.config import EnvServerConfig
    from atlasrl.envserver.server import EnvServer

    server = EnvServer(EnvServerConfig(port=0, workers=workers, envs=["maniskill"]))
    await server.start()
    client = EnvClient(server.address)
    await client.connect()
    handle, spec = await client.open(f"maniskill:{task}", {"image_size": str(size), "max_steps": "100000"}, seed=0)
    await client.reset(handle)
    codec = ActionCodec([-1.0] * spec.action_dim, [1.0] * spec.action_dim)
    rng = np.random.default_rng(0)

    async def block(n: int) -> None:
        for _ in range(n):
            obs = await client.step_one(handle, codec.sample_text(rng))
            wire.append(obs.proto.ByteSize())
        sizes.update(raw_image_bytes=int(sum(i.nbytes for i in obs.images)), cameras=len(obs.images),
                     wire_image_bytes=int(sum(t.ByteSize() for t in obs.proto.images)))

    async def close() -> None:
        await client.aclose()
        await server.stop(0)
    return block, close


async def run(args) -> tuple[dict, dict]:
    wire: list[int] = []
    sizes: dict = {}
    modes = {
        "gym": make_gym(args.task, args.image_size),
        "textenv": make_textenv(args.task, args.image_size),
        "server": await make_server(args.task, args.image_size, 0, wire, sizes),
        "server-p": await make_server(args.task, args.image_size, 1, [], {}),
    }
    per_block = max(1, args.steps // args.rounds)
    # warm-up (first frames, caches), then interleaved blocks: load drift hits every mode alike
    seconds = await interleaved_seconds(modes, per_block, args.rounds, warmup=3)
    rates = {k: per_block * args.rounds / s for k, s in seconds.items()}
    sizes["wire_observation_bytes"] = float(np.mean(wire[3:]))
    return rates, sizes


async def run_chunks(args) -> dict[str, dict]:
    """Render every step vs render at decision, through the env server, per execute_steps k."""
    from atlasrl.action_codec import ActionCodec
    from atlasrl.clients.env import EnvClient
    from atlasrl.envserver.config import EnvServerConfig
    from atlasrl.envserver.server import EnvServer

    server = EnvServer(EnvServerConfig(port=0, workers=0, envs=["maniskill"]))
    await server.start()
    client = EnvClient(server.address)
    await client.connect()
    handles: dict[str, tuple[int, int]] = {}
    codec = None
    for k in args.execute:
        for render in ("every_step", "decision"):
            cfg = {"image_size": str(args.image_size), "max_steps": "100000", "action_chunk": str(args.chunk),
                   "execute_steps": str(k), "render": render}
            handle, spec = await client.open(f"maniskill:{args.task}", cfg, seed=0)
            await client.reset(handle)
            handles[f"k={k} {render}"] = (handle, k)
            codec = codec or ActionCodec([-1.0] * spec.action_dim, [1.0] * spec.action_dim, max_steps=args.chunk)
    rng = np.random.default_rng(0)
    steps = dict.fromkeys(handles, 0)
    decisions = dict.fromkeys(handles, 0)
    seconds = dict.fromkeys(handles, 0.0)

    async def block(name: str, n_steps: int, timed: bool = True) -> None:
        handle, _ = handles[name]
        done = 0
        t0 = time.perf_counter()
        while done < n_steps:
            obs = await client.step_one(handle, codec.sample_text(rng, steps=args.chunk))
            done += int(obs.info["steps_applied"])
            if timed:
                decisions[name] += 1
            if obs.done:
                await client.reset(handle)
        if timed:
            seconds[name] += time.perf_counter() - t0
            steps[name] += done

    for name in handles:                      # warm-up
        await block(name, 2 * args.chunk, timed=False)
    per_block = max(args.chunk, args.steps // args.rounds)
    for _ in range(args.rounds):              # interleaved, so load drift hits every row alike
        for name in handles:
            await block(name, per_block)
    await client.aclose()
    await server.stop(0)
    return {name: {"k": handles[name][1], "steps_per_s": steps[name] / seconds[name],
                   "decisions_per_s": decisions[name] / seconds[name]} for name in handles}


def print_chunks(args, rows: dict[str, dict]) -> dict:
    print(f"\nRender at decision: {args.task} {args.image_size}x{args.image_size}, chunks of H={args.chunk} random steps "
          f"through the env server, ~{args.steps} physics steps per row in {args.rounds} interleaved rounds")
    print(f"{'execute_steps k':<16} {'render':<11} {'env steps/s':>12} {'decisions/s':>12} {'speedup':>8}")
    speedup = {}
    for name, r in rows.items():
        base = rows[f"k={r['k']} every_step"]["steps_per_s"]
        x = r["steps_per_s"] / base
        if name.endswith("decision"):
            speedup[str(r["k"])] = round(x, 3)
        print(f"{r['k']:<16} {name.split()[1]:<11} {r['steps_per_s']:12.1f} {r['decisions_per_s']:12.2f} {x:8.2f}")
    return {"chunk": args.chunk, "rows": {k: {m: round(v, 3) for m, v in r.items()} for k, r in rows.items()},
            "render_at_decision_speedup_by_k": speedup}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="PickCube-v1")
    ap.add_argument("--steps", type=int, default=120, help="steps per mode")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved blocks per mode")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--chunk", type=int, default=4, help="H of the render-at-decision section (0: skip it)")
    ap.add_argument("--execute", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2, 4],
                    help="execute_steps values of the render-at-decision section")
    ap.add_argument("--only-chunks", action="store_true", help="run only the render-at-decision section")
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"machine load (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    chunks = {}
    if args.chunk:
        chunks = print_chunks(args, asyncio.run(run_chunks(args)))
    if args.only_chunks:
        print(json.dumps({"bench": "maniskill_throughput", "task": args.task, "image_size": args.image_size,
                          "steps": args.steps, "rounds": args.rounds, "loadavg": load, "render_at_decision": chunks}))
        return

    rates, sizes = asyncio.run(run(args))
    base = rates["gym"]
    print(f"ManiSkill {args.task}, {args.image_size}x{args.image_size} RGB, 1 env per mode, "
          f"{args.steps} steps per mode in {args.rounds} interleaved rounds")
    print(f"{'mode':<10} {'steps/s':>9} {'vs gym':>8} {'ms/step':>9}")
    for mode, r in rates.items():
        print(f"{mode:<10} {r:9.1f} {r / base:8.2f} {1000 / r:9.1f}")
    raw, obs_bytes = sizes["raw_image_bytes"], sizes["wire_observation_bytes"]
    print(f"bytes/step: raw images {raw:,} ({sizes['cameras']} camera); on the wire: images {sizes['wire_image_bytes']:,}, "
          f"whole Observation {obs_bytes:,.0f} (raw/wire {raw / obs_bytes:.2f}x)")
    print(json.dumps({
        "bench": "maniskill_throughput", "task": args.task, "image_size": args.image_size, "steps": args.steps,
        "rounds": args.rounds, "steps_per_s": {k: round(v, 2) for k, v in rates.items()},
        "ratio_vs_gym": {k: round(v / base, 3) for k, v in rates.items()}, **sizes,
        "loadavg": load, "render_at_decision": chunks,
    }))


if __name__ == "__main__":
    main()
