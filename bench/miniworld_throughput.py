"""MiniWorld steps/s at 64 and 128 px: the plain env, atlasrl's TextEnv in process, and through the env server.

    .venv/bin/python bench/miniworld_throughput.py [--env Hallway] [--sizes 64 128] [--steps 600] [--rounds 4]

Modes, all with random actions (one action per step, one step in flight) at each image size:
  gym        miniworld's own loop: env.step(a) on the OpenGL thread, a whole block per dispatch (the baseline)
  textenv    atlasrl's MiniWorldTextEnv in process: text -> parse -> step -> observation assembly
  server     EnvClient -> gRPC loopback -> env server, env on the server's thread pool (workers=0)
  server-p   the same with the env in a worker process (workers=1)
  server-b   --batch envs on one server (workers=0) stepped by one batched Step request (what an actor sends);
             counted in env steps, so it shows what the round trip costs once amortised
Episodes are made long (max_steps=100000) so resets stay out of the timing. All envs of a size are built
first; the modes then run in interleaved blocks (--rounds), so load drifting on a shared machine hits
every mode alike. The 1-minute load average is printed with the table (figures on a shared machine are
labelled so), then one JSON line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os

import numpy as np
from interleave import interleaved_seconds  # bench/interleave.py (the script's directory is on sys.path)

WORDS = ("turn left", "turn right", "move forward")


def make_gym(name: str, size: int):
    from atlasrl.envserver.miniworld import gl

    def build():
        mw = gl.load()
        env = getattr(mw.envs, name)(obs_width=size, obs_height=size)
        env.max_episode_steps = 1_000_000
        env.reset(seed=0)
        env.action_space.seed(0)
        return env

    env = gl.call(build)

    def steps(n: int) -> None:
        for _ in range(n):
            env.step(env.action_space.sample())

    async def block(n: int) -> None:
        gl.call(steps, n)

    def close() -> None:
        gl.call(env.close)
        gl.call(env.shadow_window.close)
    return block, close


def make_textenv(name: str, size: int):
    from atlasrl.envserver import registry

    env = registry.make(f"miniworld:{name}", {"image_size": str(size), "max_steps": "100000"}, seed=0)
    env.text_reset()
    rng = np.random.default_rng(0)

    async def block(n: int) -> None:
        for a in rng.integers(0, 3, n):
            env.text_step(WORDS[a])
    return block, env.close


async def make_server(name: str, size: int, workers: int, wire: list[int], batch: int = 1):
    from atlasrl.clients.env import EnvClient
    from atlasrl.envserver.config import EnvServerConfig
    from atlasrl.envserver.server import EnvServer

    server = EnvServer(EnvServerConfig(port=0, workers=workers, envs=["miniworld"]))
    await server.start()
    client = EnvClient(server.address)
    await client.connect()
    handles = []
    for i in range(batch):
        handle, _ = await client.open(f"miniworld:{name}", {"image_size": str(size), "max_steps": "100000"}, seed=i)
        await client.reset(handle)
        handles.append(handle)
    rng = np.random.default_rng(0)

    async def block(n: int) -> None:
        if batch == 1:
            for a in rng.integers(0, 3, n):
                obs = await client.step_one(handles[0], WORDS[a])
                wire.append(obs.proto.ByteSize())
            return
        for _ in range(max(1, n // batch)):     # n env steps in batches of `batch`
            results = await client.step([(h, WORDS[a]) for h, a in zip(handles, rng.integers(0, 3, batch))])
            for r in results:
                r.unwrap()

    async def close() -> None:
        await client.aclose()
        await server.stop(0)
    return block, close


async def run_size(args, size: int) -> tuple[dict[str, float], float]:
    wire: list[int] = []
    modes = {
        "gym": make_gym(args.env, size),
        "textenv": make_textenv(args.env, size),
        "server": await make_server(args.env, size, 0, wire),
        "server-p": await make_server(args.env, size, 1, []),
        "server-b": await make_server(args.env, size, 0, [], batch=args.batch),
    }
    per_block = max(1, args.steps // args.rounds)
    # warm-up (first frames, shader and pipe start-up), then interleaved blocks: load drift hits every mode alike
    seconds = await interleaved_seconds(modes, per_block, args.rounds, warmup=10)
    steps = {k: per_block * args.rounds for k in modes}
    steps["server-b"] = max(1, per_block // args.batch) * args.batch * args.rounds
    return {k: steps[k] / s for k, s in seconds.items()}, float(np.mean(wire[10:]))


async def run(args) -> dict[int, tuple[dict[str, float], float]]:
    return {size: await run_size(args, size) for size in args.sizes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="Hallway", help="MiniWorld env name (miniworld:<name>)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="first-person image sides in px")
    ap.add_argument("--steps", type=int, default=600, help="steps per mode and size")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved blocks per mode")
    ap.add_argument("--batch", type=int, default=16, help="envs per batched Step in mode server-b")
    args = ap.parse_args()

    load_before = os.getloadavg()[0]
    results = asyncio.run(run(args))
    load_after = os.getloadavg()[0]
    print(f"MiniWorld {args.env}, first-person RGB, 1 env per mode (server-b: {args.batch}), {args.steps} random steps per mode in "
          f"{args.rounds} interleaved rounds; {os.cpu_count()} CPUs, 1-min load {load_before:.2f} -> {load_after:.2f}"
          f"{' (shared machine)' if max(load_before, load_after) > 1.0 else ''}")
    print(f"{'px':>4} {'mode':<10} {'steps/s':>9} {'vs gym':>8} {'ms/step':>9}")
    for size, (rates, _) in results.items():
        for mode, r in rates.items():
            print(f"{size:>4} {mode:<10} {r:9.1f} {r / rates['gym']:8.2f} {1000 / r:9.2f}")
    for size, (_, wire) in results.items():
        print(f"{size:>4} px: raw frame {size * size * 3:,} bytes, serialized Observation {wire:,.0f} bytes")
    print(json.dumps({
        "bench": "miniworld_throughput", "env": args.env, "steps": args.steps, "rounds": args.rounds, "batch": args.batch,
        "load_1min": [round(load_before, 2), round(load_after, 2)], "cpus": os.cpu_count(),
        "steps_per_s": {str(s): {k: round(v, 1) for k, v in r.items()} for s, (r, _) in results.items()},
        "wire_observation_bytes": {str(s): round(w) for s, (_, w) in results.items()},
    }))


if __name__ == "__main__":
    main()
