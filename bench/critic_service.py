#!/usr/bin/env python3
"""Critic service throughput and latency, value backend (b), through the RPC and in-process.

    .venv/bin/python bench/critic_service.py --seconds 3
    .venv/bin/python bench/critic_service.py --model critic.pt --actors 1 --actors 8 --actors 32 --env-size 8

What an actor does with reward.source=critic, per env step: one Score call with the new frame (last_only) and
the task text, waiting for the verdict. N concurrent "actors" (asyncio tasks, each its own channel) do that in a
closed loop for --seconds, at N = 1, 8, 32:

- rpc:        the critic in its own process (`atlasrl critic --backend value`), frames over loopback gRPC;
- in-process: the same backend and batcher (atlasrl/critic/batcher.py) called directly, no gRPC.

Frames are real FrozenLake frames from an env server started here (zstd tensors as the env sends them, which
the actor forwards without re-encoding). Reported: frames/s, p50/p99 latency of one verdict, mean frames per
model call, and the bytes per scored frame on the wire (request and response messages, as serialized). Prints
the machine load beside the table (a shared machine's numbers are labelled so) and ends with one JSON line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from atlasrl.clients.critic import CriticClient, frame  # noqa: E402
from atlasrl.v1 import critic_pb2  # noqa: E402

TASK = "Walk on the frozen lake from the start to the goal without falling into a hole."


async def real_frames(env_size: int, n: int) -> list:
    """n FrozenLake frames (as encoded by the env server) from random walks."""
    from atlasrl.clients.env import EnvClient
    from atlasrl.envserver.config import EnvServerConfig
    from atlasrl.envserver.server import EnvServer

    server = EnvServer(EnvServerConfig(port=0, workers=0))
    await server.start()
    rng = np.random.default_rng(0)
    out = []
    try:
        async with EnvClient(server.address, decode_images=False) as env:
            handle, spec = await env.open("frozenlake", {"size": str(env_size)})
            obs = (await env.reset(handle, 0)).proto
            while len(out) < n:
                out.append(obs.images[0])
                obs = (await env.step_one(handle, str(rng.choice(list(spec.valid_actions))))).proto
                if obs.terminated or obs.truncated:
                    obs = (await env.reset(handle, len(out))).proto
    finally:
        await server.stop(0)
    return out


async def closed_loop(call, actors: int, seconds: float, frames: list) -> dict:
    lat: list[float] = []
    stop = time.perf_counter() + seconds

    async def actor(i: int) -> None:
        k = i
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await call(i, frames[k % len(frames)])
            lat.append(time.perf_counter() - t0)
            k += actors

    t0 = time.perf_counter()
    await asyncio.gather(*(actor(i) for i in range(actors)))
    wall = time.perf_counter() - t0
    ms = np.array(lat) * 1e3
    return {"frames_per_s": len(lat) / wall, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "calls": len(lat)}


async def bench_rpc(address: str, actors: int, seconds: float, frames: list) -> dict:
    clients = [CriticClient(address) for _ in range(actors)]
    for c in clients:
        await c.info()
    sizes = []

    async def call(i: int, f) -> None:
        resp = await clients[i].score_response(TASK, [f], last_only=True, timeout=30)
        sizes.append(resp.batch_size)

    out = await closed_loop(call, actors, seconds, frames)
    for c in clients:
        await c.close()
    out["mean_batch"] = float(np.mean(sizes)) if sizes else 0.0
    return out


async def bench_inprocess(model: str, actors: int, seconds: float, frames: list, max_wait_ms: float) -> dict:
    from atlasrl import codec
    from atlasrl.critic.backends import Item, make_backend
    from atlasrl.critic.batcher import Batcher
    from atlasrl.critic.config import CriticConfig

    backend = make_backend(CriticConfig(backend="value", model=model, device="cpu"))
    batcher = Batcher(backend, max_batch=64, max_wait_ms=max_wait_ms)
    batcher.start()
    sizes = []

    async def call(i: int, f) -> None:   # the actor's work without gRPC: decode, batch, score
        _, info = await batcher.submit([Item(TASK, codec.decode(f))])
        sizes.append(info.largest_batch)

    try:
        out = await closed_loop(call, actors, seconds, frames)
    finally:
        await batcher.stop()
    out["mean_batch"] = float(np.mean(sizes)) if sizes else 0.0
    return out


def start_critic(model: str, max_wait_ms: float) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "atlasrl.cli.main", "critic", "--port", "0", "--print-port", "--backend", "value",
           "--device", "cpu", "--set", f"max_wait_ms={max_wait_ms}"]
    if model:
        cmd += ["--model", model]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    line = proc.stdout.readline().strip() if proc.stdout else ""
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"critic did not start: {line!r}")
    return proc, f"127.0.0.1:{line.split()[1]}"


def wire_bytes(f) -> tuple[int, int]:
    req = critic_pb2.ScoreRequest(task=TASK, frames=[frame(f)], last_only=True)
    resp = critic_pb2.ScoreResponse(scores=[critic_pb2.FrameScore(progress=0.37, done_probability=0.01)],
                                    batch_size=8, queue_ms=1.5, model_ms=3.2, backend="value")
    return req.ByteSize(), resp.ByteSize()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="closed-loop time per configuration")
    ap.add_argument("--actors", type=int, action="append", help="concurrent actors (repeatable; default 1, 8, 32)")
    ap.add_argument("--model", default="", help="value critic checkpoint (default: seeded random weights; same cost)")
    ap.add_argument("--env-size", type=int, default=4, help="FrozenLake map size of the frames")
    ap.add_argument("--max-wait-ms", type=float, default=2.0, help="critic batching window")
    args = ap.parse_args()
    actors = args.actors or [1, 8, 32]
    frames = await real_frames(args.env_size, 256)
    req_b, resp_b = zip(*(wire_bytes(f) for f in frames))
    shape = list(frames[0].shape)
    proc, address = start_critic(args.model, args.max_wait_ms)
    rows = []
    try:
        for n in actors:
            rows.append(("rpc", n, await bench_rpc(address, n, args.seconds, frames)))
            rows.append(("in-process", n, await bench_inprocess(args.model, n, args.seconds, frames,
                                                                args.max_wait_ms)))
    finally:
        proc.terminate()
        proc.wait(10)
    load = os.getloadavg()
    print(f"critic service, value backend, FrozenLake {args.env_size}x{args.env_size} frames {shape}, "
          f"{args.seconds:.0f} s per row; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"on {os.cpu_count()} cores")
    print(f"{'path':<11} {'actors':>6} {'frames/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6}")
    for path, n, r in rows:
        print(f"{path:<11} {n:>6} {r['frames_per_s']:>9.1f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{r['mean_batch']:>6.1f}")
    print(f"bytes per scored frame on the wire: request {np.mean(req_b):.0f} (frame tensor "
          f"{np.mean([f.ByteSize() for f in frames]):.0f} of {int(np.prod(shape))} raw), response {np.mean(resp_b):.0f}")
    summary = {"bench": "critic_service", "backend": "value", "frame_shape": shape, "seconds": args.seconds,
               "loadavg": list(load), "cpus": os.cpu_count(),
               "bytes_per_frame": {"request": float(np.mean(req_b)), "response": float(np.mean(resp_b))},
               "rows": [{"path": p, "actors": n, **r} for p, n, r in rows]}
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
