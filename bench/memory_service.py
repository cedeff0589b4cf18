"""Memory service throughput and latency over real loopback gRPC.

The memory runs in its own process (``python -m atlasrl.memory``); this process
drives it with asyncio clients, each on its own channel.

- Ingest: episodes/s of 8x8 FrozenLake-like episodes (30 states), without and
  with one 128x128 key frame, in streams of 32; baseline in the same run: the
  same episodes applied in-process to a MemoryState (no gRPC); best of
  --rounds, alternating, to damp the noise of shared cores.
- Latency p50/p99 and requests/s at 1, 16 and 64 concurrent clients for
  Query (maps + skills), Query (+ 128x128 frame, overlay, top-4 exemplars),
  Shape (1 transition) and Shape (64 transitions); baseline: the tiny Stats RPC
  at the same concurrency (ratio = p50 / Stats p50: the cost above a bare RPC).

    .venv/bin/python bench/memory_service.py --seconds 2

Prints a table and one JSON line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from atlasrl.clients.memory import MemoryClient, episode_record, query_request, transition
from atlasrl.memory.config import MemoryConfig
from atlasrl.memory.records import episode_from_record
from atlasrl.memory.state import MemoryState
from atlasrl.v1 import memory_pb2

SIZE, LAYOUTS = 8, 8


def make_episodes(n: int, frames: bool, rng: np.random.Generator, prefix: str) -> list[memory_pb2.EpisodeRecord]:
    out = []
    for i in range(n):
        cells, cell = [], np.array([0, 0])
        for _ in range(30):
            cells.append(tuple(cell))
            cell = np.clip(cell + [(0, 1), (1, 0), (0, -1), (-1, 0)][rng.integers(4)], 0, SIZE - 1)
        win = i % 5 == 0
        frame = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) if frames else None
        out.append(episode_record("frozenlake", f"L{i % LAYOUTS}", SIZE, SIZE, cells, success=win,
                                  cause="" if win else "hole", goal=(SIZE - 1, SIZE - 1), entities=[("hole", (3, 3))],
                                  frames=[(len(cells) - 1, frame)] if frames else (), episode_id=f"{prefix}{i}"))
    return out


async def ingest_rate(address: str, records, stream_len: int = 32) -> float:
    async with MemoryClient(address) as mem:
        t0 = time.perf_counter()
        for i in range(0, len(records), stream_len):
            s = await mem.ingest(records[i:i + stream_len])
            assert s.accepted == len(records[i:i + stream_len]), s
        return len(records) / (time.perf_counter() - t0)


def inprocess_rate(records) -> float:
    state = MemoryState(MemoryConfig())
    t0 = time.perf_counter()
    for r in records:
        state.apply(episode_from_record(r, state.cfg.limits))
    return len(records) / (time.perf_counter() - t0)


async def latency(address: str, clients: int, seconds: float, make_call) -> dict:
    lat: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def one(c: int):
        async with MemoryClient(address) as mem:
            call = make_call(mem.stub, c)
            await call()  # connect + warm up
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                await call()
                lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(c) for c in range(clients)))
    wall = time.perf_counter() - t0
    a = np.array(lat) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "rps": len(a) / wall, "n": len(a)}


def calls(frame):
    shape1 = memory_pb2.ShapeBatch(transitions=[transition("frozenlake", "L1", (0, 0), (0, 1))])
    shape64 = memory_pb2.ShapeBatch(transitions=[transition("frozenlake", f"L{i % LAYOUTS}", (i % SIZE, 0), (i % SIZE, 1))
                                                 for i in range(64)])
    q_lite = query_request("frozenlake", "L1")
    q_full = query_request("frozenlake", "L1", frame=frame, agent=(2, 3), top_k=4, overlay=True)
    stats = memory_pb2.MemoryStatsRequest()
    return {
        "Stats (baseline)": lambda stub, c: lambda: stub.Stats(stats),
        "Query maps+skills": lambda stub, c: lambda: stub.Query(q_lite),
        "Query +frame/overlay/top4": lambda stub, c: lambda: stub.Query(q_full),
        "Shape 1": lambda stub, c: lambda: stub.Shape(shape1),
        "Shape 64": lambda stub, c: lambda: stub.Shape(shape64),
    }


async def main(args) -> dict:
    proc = subprocess.Popen([sys.executable, "-m", "atlasrl.memory", "--port", "0", "--print-port"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("PORT "), line
    address = f"127.0.0.1:{int(line.split()[1])}"
    rng = np.random.default_rng(0)
    try:
        # best of `rounds`, gRPC and in-process alternating, so both see the same (shared, noisy) machine
        ingest = {"grpc_plain": 0.0, "grpc_with_frame": 0.0, "inprocess_plain": 0.0, "inprocess_with_frame": 0.0}
        for r in range(args.rounds):
            for frames, name in ((False, "plain"), (True, "with_frame")):
                eps = make_episodes(args.episodes, frames, rng, f"{name}{r}-")
                ingest[f"grpc_{name}"] = max(ingest[f"grpc_{name}"], await ingest_rate(address, eps))
                ingest[f"inprocess_{name}"] = max(ingest[f"inprocess_{name}"], inprocess_rate(eps))
        frame = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
        table = {}
        for clients in args.clients:
            for name, make in calls(frame).items():
                table[(name, clients)] = await latency(address, clients, args.seconds, make)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    print(f"ingest episodes/s (30 states, streams of 32): gRPC {ingest['grpc_plain']:.0f} "
          f"(in-process {ingest['inprocess_plain']:.0f}, ratio {ingest['grpc_plain'] / ingest['inprocess_plain']:.2f}); "
          f"with a 128x128 key frame: gRPC {ingest['grpc_with_frame']:.0f} "
          f"(in-process {ingest['inprocess_with_frame']:.0f}, ratio {ingest['grpc_with_frame'] / ingest['inprocess_with_frame']:.2f})")
    print(f"{'call':<28}{'clients':>8}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}{'p50/Stats':>11}")
    rows = []
    for (name, clients), r in table.items():
        base = table[("Stats (baseline)", clients)]["p50_ms"]
        ratio = r["p50_ms"] / base
        rows.append({"call": name, "clients": clients, **{k: round(v, 3) for k, v in r.items()}, "p50_vs_stats": round(ratio, 2)})
        print(f"{name:<28}{clients:>8}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['rps']:>10.0f}{ratio:>11.2f}")
    summary = {"bench": "memory_service", "ingest_eps": {k: round(v, 1) for k, v in ingest.items()}, "latency": rows}
    print(json.dumps(summary))
    return summary


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=256, help="episodes per ingest measurement")
    p.add_argument("--rounds", type=int, default=3, help="ingest measurements per variant (best is reported)")
    p.add_argument("--seconds", type=float, default=2.0, help="duration of each latency cell")
    p.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64])
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
