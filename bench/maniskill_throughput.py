"""ManiSkill through the env server vs the plain in-process gym loop (one env per mode, one step in flight).

    .venv/bin/python bench/maniskill_throughput.py [--task PickCube-v1] [--steps 120] [--rounds 4] [--image-size 128]

Modes, all with random actions on the same task, camera and resolution:
  gym        mani_skill's own loop: env.step(action) with obs_mode="rgb" (the baseline)
  textenv    atlasrl's ManiSkillEnv in-process: text -> codec -> step -> observation assembly
  server     EnvClient -> gRPC loopback -> env server, env on the server's thread pool
  server-p   the same with the env in a worker process (--workers 1: the per-GPU layout)
All four envs are built first; then the modes run in interleaved blocks
(``--rounds`` rounds of steps/rounds each), so load drifting on a shared machine
hits every mode alike. Prints steps/s, the ratio to gym and ms/step, bytes per
step (raw image bytes vs the serialized Observation on the wire), then one JSON line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np


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
    for block, _ in modes.values():          # warm-up: first frames, caches
        await block(3)
    seconds = dict.fromkeys(modes, 0.0)
    for _ in range(args.rounds):
        for name, (block, _) in modes.items():
            t0 = time.perf_counter()
            await block(per_block)
            seconds[name] += time.perf_counter() - t0
    for _, close in modes.values():
        res = close()
        if asyncio.iscoroutine(res):
            await res
    rates = {k: per_block * args.rounds / s for k, s in seconds.items()}
    sizes["wire_observation_bytes"] = float(np.mean(wire[3:]))
    return rates, sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="PickCube-v1")
    ap.add_argument("--steps", type=int, default=120, help="steps per mode")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved blocks per mode")
    ap.add_argument("--image-size", type=int, default=128)
    args = ap.parse_args()

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
    }))


if __name__ == "__main__":
    main()
