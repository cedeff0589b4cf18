"""ManiSkill through the env server vs the plain in-process gym loop (one env, one step in flight).

    .venv/bin/python bench/maniskill_throughput.py [--task PickCube-v1] [--steps 150] [--image-size 128]

Modes, all with random actions on the same task, camera and resolution:
  gym        mani_skill's own loop: env.step(action) with obs_mode="rgb" (the baseline)
  textenv    atlasrl's ManiSkillEnv in-process: action text -> codec -> step -> observation assembly
  server     EnvClient -> gRPC loopback -> env server (envs on its thread pool) -> back
  server-p   the same with the env in a worker process (--workers 1, the GPU-host layout)
Prints a table (steps/s, ratio to gym, ms/step) and bytes per step (raw image
bytes vs the serialized Observation on the wire), then one JSON line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np


def gym_loop(task: str, size: int, steps: int) -> float:
    import gymnasium as gym
    import mani_skill.envs  # noqa: F401
    import torch

    env = gym.make(task, obs_mode="rgb", control_mode="pd_ee_delta_pose", reward_mode="normalized_dense",
                   sensor_configs=dict(width=size, height=size), num_envs=1, render_backend="cpu")
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(5):
        env.step(env.action_space.sample())
    t0 = time.perf_counter()
    for _ in range(steps):
        obs, *_ = env.step(env.action_space.sample())
        _ = obs["sensor_data"]["base_camera"]["rgb"].numpy() if isinstance(obs["sensor_data"]["base_camera"]["rgb"], torch.Tensor) else None
    rate = steps / (time.perf_counter() - t0)
    env.close()
    return rate


def textenv_loop(task: str, size: int, steps: int) -> float:
    from atlasrl.envservers.maniskill import make_env

    env = make_env({"image_size": str(size), "max_steps": "100000"}, 0, f"maniskill:{task}")
    env.text_reset()
    rng = np.random.default_rng(0)
    texts = [env.codec.sample_text(rng) for _ in range(steps + 5)]
    for t in texts[:5]:
        env.text_step(t)
    t0 = time.perf_counter()
    for t in texts[5:]:
        env.text_step(t)
    rate = steps / (time.perf_counter() - t0)
    env.close()
    return rate


async def server_loop(task: str, size: int, steps: int, workers: int) -> tuple[float, dict]:
    from atlasrl.action_codec import ActionCodec
    from atlasrl.clients.env import EnvClient
    from atlasrl.envservers.config import EnvServerConfig
    from atlasrl.envservers.server import EnvServer

    server = EnvServer(EnvServerConfig(port=0, workers=workers, envs=["maniskill"]))
    await server.start()
    try:
        async with EnvClient(server.address) as client:
            handle, spec = await client.open(f"maniskill:{task}", {"image_size": str(size), "max_steps": "100000"}, seed=0)
            obs = await client.reset(handle)
            codec = ActionCodec([-1.0] * spec.action_dim, [1.0] * spec.action_dim)
            rng = np.random.default_rng(0)
            texts = [codec.sample_text(rng) for _ in range(steps + 5)]
            for t in texts[:5]:
                await client.step_one(handle, t)
            wire = []
            t0 = time.perf_counter()
            for t in texts[5:]:
                obs = await client.step_one(handle, t)
                wire.append(obs.proto.ByteSize())
            rate = steps / (time.perf_counter() - t0)
            sizes = {
                "raw_image_bytes": int(sum(img.nbytes for img in obs.images)),
                "wire_image_bytes": int(sum(t.ByteSize() for t in obs.proto.images)),
                "wire_observation_bytes": float(np.mean(wire)),
                "cameras": len(obs.images),
            }
            return rate, sizes
    finally:
        await server.stop(0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="PickCube-v1")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--image-size", type=int, default=128)
    args = ap.parse_args()

    rates = {"gym": gym_loop(args.task, args.image_size, args.steps),
             "textenv": textenv_loop(args.task, args.image_size, args.steps)}
    rates["server"], sizes = asyncio.run(server_loop(args.task, args.image_size, args.steps, workers=0))
    rates["server-p"], _ = asyncio.run(server_loop(args.task, args.image_size, args.steps, workers=1))

    base = rates["gym"]
    print(f"ManiSkill {args.task}, {args.image_size}x{args.image_size} RGB, {args.steps} steps per mode, 1 env")
    print(f"{'mode':<10} {'steps/s':>9} {'vs gym':>8} {'ms/step':>9}")
    for mode, r in rates.items():
        print(f"{mode:<10} {r:9.1f} {r / base:8.2f} {1000 / r:9.1f}")
    print(f"bytes/step: raw images {sizes['raw_image_bytes']:,} ({sizes['cameras']} camera), images on the wire "
          f"{sizes['wire_image_bytes']:,}, whole Observation on the wire {sizes['wire_observation_bytes']:,.0f} "
          f"({sizes['raw_image_bytes'] / sizes['wire_observation_bytes']:.2f}x raw/wire)")
    print(json.dumps({
        "bench": "maniskill_throughput", "task": args.task, "image_size": args.image_size, "steps": args.steps,
        "steps_per_s": {k: round(v, 2) for k, v in rates.items()},
        "ratio_vs_gym": {k: round(v / base, 3) for k, v in rates.items()},
        **sizes,
    }))


if __name__ == "__main__":
    main()
