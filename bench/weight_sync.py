"""Weight sync bench: the three weight transports (stream, collective, delta) against a raw TCP socket moving the
same bytes, on a synthetic bf16 state dict (default 0.5B parameters, ~1 GB) and on the tiny model after one real
Trainer update.

    .venv/bin/python bench/weight_sync.py [--params 5e8] [--repeats 2] [--lr 1e-5] [--skip-tiny]

The learner side (WeightServicer + CollectiveHub, as LearnerHost wires them) runs in its own process, the
subscriber (WeightSubscriber, as the actor runs it) in this one; the raw socket also sends from another process
into a preallocated buffer here. One version per measure, after a warm-up version (the collective forms its
group in the warm-up). Per transport: seconds from "publish" to the verified version in the subscriber's hands,
split into wire time and assembly time (after the last byte: delta rebuild and CRC-32 checks), plus the
learner's encode time (frames, or the delta), which happens once per version whatever the subscriber count.

The synthetic update is what Adam does to bf16 weights at a small learning rate: fp32 master weights
w ~ N(0, 0.02) each move by lr (sign of a random gradient) and are rounded to bf16 again; most bf16 values
do not change. The tiny model's update is a real one (atlasrl.models.tiny + Trainer.update on 16 episodes),
at the LearnerConfig default lr (1e-5) and at the `atlasrl up` preset's (1e-3).

Prints a table, then as its last line one JSON object with stream_vs_socket, collective_vs_socket and
delta_fraction (delta wire bytes / full wire bytes of the synthetic update) among other figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MiB = 1 << 20
TENSOR_PARAMS = 896 * 4864          # one Qwen2.5-0.5B MLP matrix: the synthetic dict is made of these


def synthetic(params: int, seed: int, lr: float):
    """(names, version-1 bf16 arrays, version-2 bf16 arrays): one Adam-like step of size lr in fp32, rounded."""
    import ml_dtypes
    import numpy as np

    rng = np.random.default_rng(seed)
    names, v1, v2 = [], [], []
    left, i = params, 0
    while left > 0:
        n = min(TENSOR_PARAMS, left)
        w = rng.standard_normal(n, dtype=np.float32) * np.float32(0.02)
        step = np.where(rng.random(n, dtype=np.float32) < 0.5, -lr, lr).astype(np.float32)
        names.append(f"model.layers.{i // 7}.w{i % 7}")
        v1.append(w.astype(ml_dtypes.bfloat16))
        v2.append((w + step).astype(ml_dtypes.bfloat16))
        left -= n
        i += 1
    return names, v1, v2


# ---------------------------------------------------------------- learner process
def learner_proc(conn, params: int, seed: int, lr: float) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from atlasrl.learner.metrics import LearnerMetrics
    from atlasrl.learner.weight_service import WeightServicer
    from atlasrl.rpc import RpcServer, ServerConfig
    from atlasrl.v1 import weights_pb2
    from atlasrl.weight_codec import TensorBlob
    from atlasrl.weights.collective import CollectiveHub

    names, v1, v2 = synthetic(params, seed, lr)
    versions = {1: v1, 2: v2}
    loop = asyncio.new_event_loop()
    metrics = LearnerMetrics()
    hub = CollectiveHub("127.0.0.1", 0, backend="gloo", timeout_s=300)
    svc = WeightServicer(metrics, transports=("stream", "delta", "collective"), hub=hub, chunk_bytes=4 * MiB)

    async def serve() -> RpcServer:                 # grpc.aio binds a server to the loop that builds it
        server = RpcServer(ServerConfig(port=0, max_message_bytes=64 * MiB), metrics.metrics)
        server.add(svc, weights_pb2.DESCRIPTOR.services_by_name["WeightService"])
        await server.start()
        return server

    threading.Thread(target=loop.run_forever, daemon=True).start()
    server = asyncio.run_coroutine_threadsafe(serve(), loop).result()
    conn.send(("ready", server.address, sum(a.nbytes for a in v1)))
    version = 0
    while True:
        cmd = conn.recv()
        if cmd[0] == "stop":
            break
        if cmd[0] == "publish":             # encode (timed), wait for "go", make it the latest, broadcast to members
            _, which, collective = cmd
            version += 1
            arrays = versions[which]
            blobs = [TensorBlob.from_numpy(n, a) for n, a in zip(names, arrays)]
            t0 = time.perf_counter()
            full = svc.prepare(version, blobs)     # frames (+ delta when a delta subscriber is connected)
            enc_s = time.perf_counter() - t0
            conn.send(("encoded", enc_s, full.full.wire_bytes, full.delta.wire_bytes if full.delta else 0))
            conn.recv()                            # go
            asyncio.run_coroutine_threadsafe(svc.publish_prepared(full), loop).result()
            if collective:
                tensors = [torch.from_numpy(np.ascontiguousarray(a).view(np.uint16)) for a in arrays]
                st = hub.publish(full.manifest, tensors)
                conn.send(("broadcast", st.wire_s if st else -1.0, st.form_s if st else -1.0))
    asyncio.run_coroutine_threadsafe(server.stop(0), loop).result()
    hub.close()


def socket_proc(conn, nbytes: int) -> None:
    payload = os.urandom(nbytes)
    srv = socket.create_server(("127.0.0.1", 0))
    conn.send(srv.getsockname()[1])
    while True:
        c, _ = srv.accept()
        with c:
            if not c.recv(1):
                break
            c.sendall(payload)


def bench_socket(nbytes: int, repeats: int) -> float:
    a, b = mp.Pipe()
    p = mp.get_context("spawn").Process(target=socket_proc, args=(b, nbytes), daemon=True)
    p.start()
    b.close()
    port = a.recv()
    buf = bytearray(nbytes)
    view = memoryview(buf)
    best = float("inf")
    for _ in range(repeats + 1):            # first: warm-up (page faults of the buffers)
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"x")
            t0 = time.perf_counter()
            got = 0
            while got < nbytes:
                k = c.recv_into(view[got:], min(4 * MiB, nbytes - got))
                if not k:
                    raise RuntimeError("socket closed early")
                got += k
            best = min(best, time.perf_counter() - t0)
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.shutdown(socket.SHUT_WR)
    p.join(10)
    return best


async def bench_transport(conn, address: str, transport: str, repeats: int) -> dict:
    """Subscribe, take the warm-up version, then time ``repeats`` versions (alternating the two states)."""
    from atlasrl.clients.weights import WeightSubscriber

    sub = WeightSubscriber(address, subscriber_id=f"bench-{transport}", transport=transport,
                           channel_config=None)
    it = sub.versions()

    coll = transport == "collective"
    nxt: asyncio.Future | None = None

    async def publish(which: int) -> dict:
        """Encode on the learner, then (timed by the caller from here) make it the latest / broadcast it."""
        nonlocal nxt
        conn.send(("publish", which, coll))
        _, enc_s, full_b, delta_b = await asyncio.to_thread(conn.recv)
        if nxt is None:
            nxt = asyncio.ensure_future(it.__anext__())
            await asyncio.sleep(0)
        conn.send(("go",))
        return {"encode_s": enc_s, "full_bytes": full_b, "delta_bytes": delta_b}

    async def version(timeout: float | None = None):
        nonlocal nxt
        assert nxt is not None
        wv = await asyncio.wait_for(asyncio.shield(nxt), timeout)
        nxt = None
        return wv

    async def broadcast_reply() -> tuple:
        return await asyncio.to_thread(conn.recv) if coll else ("", 0.0, 0.0)

    await publish(1)                            # warm-up: the bootstrap copy on the stream
    await version()
    await broadcast_reply()
    if coll:                                    # until a round reaches us over the group (it forms the group)
        for _ in range(100):
            await asyncio.sleep(0.1)
            await publish(2)
            reply = await broadcast_reply()
            try:
                wv = await version(None if reply[1] >= 0 else 1.0)
            except TimeoutError:
                continue
            if wv.transport == "collective":
                break
    best: dict = {}
    for r in range(repeats):
        info = await publish(2 - r % 2 if transport == "delta" else 1 + (r + 1) % 2)
        t0 = time.perf_counter()
        wv = await version()
        total = time.perf_counter() - t0
        _, _wire_s, form_s = await broadcast_reply()
        if coll:
            member_wire = sub.transport.member.last_wire_s      # type: ignore[union-attr]
            info["group_form_s"] = form_s
        else:
            member_wire = total - wv.assembly_s
        row = dict(info, total_s=total, assembly_s=wv.assembly_s, wire_s=member_wire, via=wv.transport,
                   wire_bytes=wv.wire_bytes)
        if not best or row["total_s"] < best["total_s"]:
            best = row
    await it.aclose()
    return best


def tiny_fractions(lrs=(1e-5, 1e-3)) -> dict:
    """Delta bytes / full bytes of the tiny model's weights after one real Trainer update at each lr."""
    import tempfile

    import torch
    import torch.distributed as dist

    from atlasrl.learner.config import LearnerConfig
    from atlasrl.learner.main import WIRE, tensor_blob
    from atlasrl.learner.trainer import TrainBatch, Trainer
    from atlasrl.models.tiny import tiny_model_path
    from atlasrl.weight_codec import encode_delta, encode_frames
    from bench.learner import _free_episodes

    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method=f"file://{tempfile.mktemp(prefix='ws-pg-')}", rank=0, world_size=1)
    model_dir = str(tiny_model_path("qwen2", hidden=128, layers=2))
    eps = _free_episodes(16)
    batch = TrainBatch([e.SerializeToString() for e in eps], [1.0] * 16, [0] * 16)
    out = {}
    for lr in lrs:
        trainer = Trainer(LearnerConfig(model=model_dir, batch_episodes=16, lr=lr, micro_batch_tokens=2048), 0, 1)
        dtype, wire = WIRE["bf16"]

        def encode(version):
            return encode_frames(version, [tensor_blob(n, t.clone(), wire) for n, t in trainer.full_tensors(dtype)])  # noqa: B023

        before = encode(0)
        trainer.update(batch)
        after = encode(1)
        d = encode_delta(after, before)
        assert d is not None
        changed = total = 0
        for x, y in zip(before.chunks, after.chunks):
            a = torch.frombuffer(bytearray(b"".join(x)), dtype=torch.int16) if x and len(b"".join(x)) else None
            b = torch.frombuffer(bytearray(b"".join(y)), dtype=torch.int16) if y and len(b"".join(y)) else None
            if a is not None and b is not None:
                changed += int((a != b).sum())
                total += a.numel()
        out[lr] = {"params": total, "changed_values": changed / max(1, total),
                   "delta_fraction": d.wire_bytes / after.wire_bytes, "full_bytes": after.wire_bytes}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", type=float, default=5e8, help="synthetic parameters (bf16: 2 bytes each)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-5, help="step size of the synthetic update")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-tiny", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    params = int(args.params)
    ctx = mp.get_context("spawn")
    a, b = ctx.Pipe()
    p = ctx.Process(target=learner_proc, args=(b, params, args.seed, args.lr), daemon=True)
    p.start()
    b.close()                                   # a dead learner process then ends recv() with EOFError
    _, address, nbytes = a.recv()
    socket_s = bench_socket(nbytes, args.repeats)
    res = {}
    for t in ("stream", "delta", "collective"):
        res[t] = asyncio.run(bench_transport(a, address, t, args.repeats))
    a.send(("stop",))
    p.join(30)
    tiny = {} if args.skip_tiny else tiny_fractions()
    mb = nbytes / 1e6
    st, de, co = res["stream"], res["delta"], res["collective"]
    delta_fraction = de["delta_bytes"] / de["full_bytes"]
    rows = [
        ("raw TCP socket", socket_s, socket_s, 0.0, None, mb),
        ("gRPC stream (full)", st["total_s"], st["wire_s"], st["assembly_s"], st["encode_s"], mb),
        ("collective (gloo broadcast)", co["total_s"], co["wire_s"], co["assembly_s"], co["encode_s"], mb),
        ("delta on the gRPC stream", de["total_s"], de["wire_s"], de["assembly_s"], de["encode_s"], de["delta_bytes"] / 1e6),
    ]
    print(f"synthetic state dict: {params / 1e6:.0f}M params bf16 = {mb:.0f} MB, {args.repeats} timed versions each (best), "
          f"update lr {args.lr:g}; {os.cpu_count()} CPUs")
    print(f"{'transport':<30} {'s/version':>10} {'MB/s':>8} {'x socket':>9} {'wire s':>8} {'assembly s':>11} {'encode s':>9} {'wire MB':>9}")
    for name, total, wire, asm, enc, wmb in rows:
        print(f"{name:<30} {total:>10.3f} {mb / total:>8.0f} {socket_s / total:>9.2f} {wire:>8.3f} {asm:>11.3f} "
              f"{'' if enc is None else f'{enc:.3f}':>9} {wmb:>9.1f}")
    print(f"delta wire bytes / full: {delta_fraction:.4f} (synthetic update, lr {args.lr:g})")
    for lr, t in tiny.items():
        print(f"tiny model ({t['params'] / 1e6:.2f}M params) after one real update at lr {lr:g}: "
              f"{t['changed_values']:.3f} of bf16 values changed, delta {t['delta_fraction']:.4f} of {t['full_bytes'] / 1e6:.2f} MB")
    if "group_form_s" in co:
        print(f"collective group formation (first round, 2 ranks): {co['group_form_s']:.3f} s")
    print(json.dumps({
        "bench": "weight_sync", "params": params, "bytes": nbytes, "cpus": os.cpu_count(), "lr": args.lr,
        "socket_MBps": round(mb / socket_s, 1), "stream_MBps": round(mb / st["total_s"], 1),
        "collective_MBps": round(mb / co["total_s"], 1), "delta_MBps_effective": round(mb / de["total_s"], 1),
        "stream_s": round(st["total_s"], 4), "collective_s": round(co["total_s"], 4), "delta_s": round(de["total_s"], 4),
        "stream_assembly_s": round(st["assembly_s"], 4), "collective_assembly_s": round(co["assembly_s"], 4),
        "delta_assembly_s": round(de["assembly_s"], 4), "stream_encode_s": round(st["encode_s"], 4),
        "delta_encode_s": round(de["encode_s"], 4),
        "stream_wire_vs_socket": round(socket_s / st["wire_s"], 3), "collective_wire_vs_socket": round(socket_s / co["wire_s"], 3),
        "tiny": {str(k): {kk: round(vv, 5) for kk, vv in v.items()} for k, v in tiny.items()},
        "stream_vs_socket": round(socket_s / st["total_s"], 3),
        "collective_vs_socket": round(socket_s / co["total_s"], 3),
        "delta_fraction": round(delta_fraction, 4),
    }))


if __name__ == "__main__":
    main()
