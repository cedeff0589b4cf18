"""Learner bench: tokens/s with 1 vs 2 FSDP processes on CPU, shared model rows on GRPO groups,
and weight streaming vs a raw TCP socket.

    .venv/bin/python bench/learner.py [--updates 4] [--episodes 16] [--stream-mib 64]

Prints a table and one JSON line. Ratios are against baselines measured in the
same run (1 process; one model row per turn; a raw loopback socket moving the
same bytes), so they are comparable across machines even when absolute numbers are not.

The shared-rows batch is shaped like FrozenLake's choice-mode groups: 4 episodes
per map, the same first 3 states in all of them, pairs until turn 6, each its own
way after; every turn picks one of 4 one-token actions at random.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MiB = 1 << 20


# ---------------------------------------------------------------- training
def _free_episodes(episodes: int) -> list:
    import torch

    from atlasrl.v1 import trajectory_pb2

    g = torch.Generator().manual_seed(0)
    eps = []
    for k in range(episodes):
        prompt = torch.randint(10, 1000, (96,), generator=g).tolist()
        response = torch.randint(10, 1000, (32,), generator=g).tolist()
        turn = trajectory_pb2.TurnRecord(prompt_ids=prompt, response_ids=response, logprobs=[-7.0] * 32, loss_mask=[1] * 32,
                                         reward=float(k % 4), temperature=1.0, action_mode=trajectory_pb2.ACTION_MODE_FREE)
        eps.append(trajectory_pb2.Episode(episode_id=f"e{k}", group_id=f"g{k // 4}", group_size=4, turns=[turn]))
    return eps


def _group_episodes(episodes: int, turns: int = 8, prompt_len: int = 64) -> list:
    """Choice-mode GRPO groups of 4 whose episodes share their first states (see the module docstring)."""
    import random

    from atlasrl.v1 import trajectory_pb2

    rng = random.Random(0)
    end = 1
    choices = [[t, end] for t in (20, 21, 22, 23)]
    eps = []
    for k in range(episodes):
        group, member = k // 4, k % 4
        ep = trajectory_pb2.Episode(episode_id=f"e{k}", group_id=f"g{group}", group_size=4)
        for t in range(turns):
            branch = 0 if t < 3 else member // 2 if t < 6 else member
            state = random.Random(f"{group}/{t}/{branch}")
            action = rng.choice(choices)
            turn = ep.turns.add(prompt_ids=[state.randrange(10, 1000) for _ in range(prompt_len)], response_ids=action,
                                logprobs=[-1.4, 0.0], loss_mask=[1, 1], reward=float(member % 2 and t == turns - 1),
                                temperature=1.0, action_mode=trajectory_pb2.ACTION_MODE_CHOICE)
            for c in choices:
                turn.choices.add(ids=c)
        eps.append(ep)
    return eps


def _train_worker(rank: int, world: int, store: str, model_dir: str, episodes: int, updates: int, out: str,
                  kind: str = "free", share: bool = True) -> None:
    import torch

    torch.set_num_threads(1)   # one thread per rank in both runs: 1 vs 2 processes = 1 vs 2 cores
    import torch.distributed as dist

    from atlasrl.learner.config import LearnerConfig
    from atlasrl.learner.main import publish
    from atlasrl.learner.trainer import TrainBatch, Trainer

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    cfg = LearnerConfig(model=model_dir, batch_episodes=episodes, lr=1e-4, micro_batch_tokens=1024, share_rows=share)
    trainer = Trainer(cfg, rank, world)
    eps = _free_episodes(episodes) if kind == "free" else _group_episodes(episodes)
    batch = TrainBatch([e.SerializeToString() for e in eps], [1.0] * episodes, [0] * episodes)
    trainer.update(batch)                      # warm-up (allocations, first all-gathers)
    dist.barrier()
    t0 = time.perf_counter()
    tokens = 0.0
    for _ in range(updates):
        tokens += trainer.update(batch)["tokens"]
    dist.barrier()
    seconds = time.perf_counter() - t0
    pub, pub_cpu = [], []
    for _ in range(3):            # gather full tensors + bf16 (no gRPC); CPU time too: wall time is noisy on shared cores
        c0 = time.process_time()
        pub.append(publish(trainer, None, cfg))
        pub_cpu.append(time.process_time() - c0)
    if rank == 0:
        n_params = sum(p.numel() for _, p in trainer.policy.hf_named_parameters()) * world
        Path(out).write_text(json.dumps({"tokens_per_s": tokens / seconds, "update_s": seconds / updates, "gather_s": min(pub), "gather_cpu_s": min(pub_cpu), "params": n_params}))
    dist.destroy_process_group()


def bench_training(model_dir: str, world: int, episodes: int, updates: int, kind: str = "free", share: bool = True) -> dict:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out.json")
        mp.spawn(_train_worker, args=(world, os.path.join(d, "store"), model_dir, episodes, updates, out, kind, share),
                 nprocs=world, join=True)
        return json.load(open(out))


# ---------------------------------------------------------------- streaming
def bench_grpc_stream(payload: bytes) -> tuple[float, float]:
    """Seconds for a WeightSubscriber to receive and verify one version; and encode seconds."""

    from atlasrl.clients.weights import WeightSubscriber
    from atlasrl.learner.metrics import LearnerMetrics
    from atlasrl.learner.weight_service import WeightServicer
    from atlasrl.rpc import RpcServer, ServerConfig
    from atlasrl.v1 import tensor_pb2, weights_pb2
    from atlasrl.weight_codec import TensorBlob, encode_version

    n = len(payload) // 2
    per = 4 * MiB // 2
    blobs = [TensorBlob(f"t{i}", tensor_pb2.DTYPE_BFLOAT16, (min(per, n - off),), memoryview(payload)[2 * off : 2 * min(off + per, n)])
             for i, off in enumerate(range(0, n, per))]

    async def run():
        metrics = LearnerMetrics()
        svc = WeightServicer(metrics)
        server = RpcServer(ServerConfig(port=0), metrics.metrics)
        server.add(svc, weights_pb2.DESCRIPTOR.services_by_name["WeightService"])
        await server.start()
        t0 = time.perf_counter()
        await svc.publish(encode_version(1, blobs, 4 * MiB))
        encode_s = time.perf_counter() - t0
        best = float("inf")
        for v in range(2, 5):
            await svc.publish(encode_version(v, blobs, 4 * MiB))
            t0 = time.perf_counter()
            async for wv in WeightSubscriber(server.address, reconnect=False).versions():
                assert wv.version == v and sum(a.nbytes for a in wv.tensors.values()) == len(payload)
                break
            best = min(best, time.perf_counter() - t0)
        await server.stop(0)
        return best, encode_s

    return asyncio.run(run())


def bench_raw_socket(payload: bytes) -> float:
    """Seconds to move the same bytes over a loopback TCP socket into a preallocated buffer."""
    best = float("inf")
    for _ in range(3):
        srv = socket.create_server(("127.0.0.1", 0))
        port = srv.getsockname()[1]

        def send():
            conn, _ = srv.accept()  # noqa: B023 - the thread is joined within this iteration
            with conn:
                conn.sendall(payload)

        th = threading.Thread(target=send)
        th.start()
        buf = bytearray(len(payload))
        view = memoryview(buf)
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as c:
            got = 0
            while got < len(payload):
                k = c.recv_into(view[got:], min(4 * MiB, len(payload) - got))
                if not k:
                    break
                got += k
        best = min(best, time.perf_counter() - t0)
        th.join()
        srv.close()
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--updates", type=int, default=4)
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--stream-mib", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from atlasrl.models.tiny import tiny_model_path

    model_dir = str(tiny_model_path("qwen2", hidden=args.hidden, layers=2))
    one = bench_training(model_dir, 1, args.episodes, args.updates)
    two = bench_training(model_dir, 2, args.episodes, args.updates)
    per_turn = bench_training(model_dir, 1, args.episodes, args.updates, kind="groups", share=False)
    shared = bench_training(model_dir, 1, args.episodes, args.updates, kind="groups", share=True)
    payload = os.urandom(args.stream_mib * MiB)
    grpc_s, encode_s = bench_grpc_stream(payload)
    raw_s = bench_raw_socket(payload)
    mb = len(payload) / 1e6
    rows = [
        ("train tokens/s, 1 process (gloo, CPU)", f"{one['tokens_per_s']:.0f}", "1.00x"),
        ("train tokens/s, 2 processes (FSDP2)", f"{two['tokens_per_s']:.0f}", f"{two['tokens_per_s'] / one['tokens_per_s']:.2f}x"),
        ("update s, choice-mode groups, one model row per turn", f"{per_turn['update_s']:.3f}", "1.00x"),
        ("update s, choice-mode groups, shared rows", f"{shared['update_s']:.3f}", f"{per_turn['update_s'] / shared['update_s']:.2f}x faster"),
        (f"gather+bf16 of tiny model ({one['params'] / 1e6:.2f}M params), 1 proc", f"{one['gather_s'] * 1e3:.1f} ms", f"cpu {one['gather_cpu_s'] * 1e3:.1f} ms"),
        ("gather+bf16 of tiny model, 2 procs", f"{two['gather_s'] * 1e3:.1f} ms", f"cpu {two['gather_cpu_s'] * 1e3:.1f} ms"),
        (f"weight stream {args.stream_mib} MiB over gRPC, MB/s", f"{mb / grpc_s:.0f}", f"{raw_s / grpc_s:.2f}x of raw"),
        (f"raw TCP socket {args.stream_mib} MiB, MB/s", f"{mb / raw_s:.0f}", "1.00x"),
        ("encode (CRC-32 + 4 MiB chunks), MB/s", f"{mb / encode_s:.0f}", ""),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'measure':<{w}}  {'value':>12}  ratio")
    for name, value, ratio in rows:
        print(f"{name:<{w}}  {value:>12}  {ratio}")
    print(json.dumps({
        "bench": "learner", "cpus": os.cpu_count(),
        "tokens_per_s_1proc": round(one["tokens_per_s"], 1), "tokens_per_s_2proc": round(two["tokens_per_s"], 1),
        "speedup_2proc": round(two["tokens_per_s"] / one["tokens_per_s"], 3),
        "group_update_s_per_turn_rows": round(per_turn["update_s"], 4), "group_update_s_shared_rows": round(shared["update_s"], 4),
        "shared_rows_speedup": round(per_turn["update_s"] / shared["update_s"], 3),
        "gather_ms_1proc": round(one["gather_s"] * 1e3, 2), "gather_ms_2proc": round(two["gather_s"] * 1e3, 2),
        "gather_cpu_ms_1proc": round(one["gather_cpu_s"] * 1e3, 2), "gather_cpu_ms_2proc": round(two["gather_cpu_s"] * 1e3, 2),
        "grpc_stream_MBps": round(mb / grpc_s, 1), "raw_socket_MBps": round(mb / raw_s, 1),
        "grpc_vs_raw": round(raw_s / grpc_s, 3), "encode_MBps": round(mb / encode_s, 1),
    }))


if __name__ == "__main__":
    main()
