"""Env serving throughput: our gRPC Session stream vs an HTTP/JSON + base64 PNG server, same env, same run
(and, with --openenv, the env server's OpenEnv WebSocket side driven by openenv-core's client).

    .venv/bin/python bench/env_throughput.py [--seconds 1.5] [--rounds 5] [--batches 1,16,64] [--env frozenlake] [--size 4] [--image-size 128]
        [--openenv list,png]

(a) grpc: ``atlasrl envserver`` in its own process (``--workers``, default 0 = in-process
    threads); the client is the real ``EnvClient`` on one stream: B envs, split into
    ``--inflight`` groups that each keep one batched Step in flight (pipelining). Finished
    episodes restart inside the Step (``StepRequest.auto_reset``, the recommended client
    setting); ``--no-auto-reset`` sends pipelined Reset requests instead. The server keeps encoded
    frames by content (``EnvServerConfig.frame_cache_mb``, on by default: a grid frame seen before
    skips zstd); ``--frame-cache-mb 0`` measures it without.
(b) http: a stdlib ``ThreadingHTTPServer`` (HTTP/1.1 keep-alive) in its own process,
    one env per request, answering JSON with the frame as base64 PNG, as HTTP env
    servers in this field do (every PNG encoded afresh). The client steps B envs per round, one request each,
    over min(B, 8) keep-alive connections in parallel threads.
Both clients decode every frame to numpy (zstd tensor vs base64 + PNG) and reset
finished episodes. Actions are random valid moves. Bytes per step count what
crosses the socket per env step: request + response (HTTP: headers included;
gRPC: serialized messages, HTTP/2 framing not included).
(c) openenv (--openenv FORMATS): the same env server process also serves OpenEnv
    (``--openenv-port``); B ``GenericEnvClient`` sessions (one WebSocket each) step
    concurrently, frames as nested JSON lists (``list``, OpenEnv's convention) or
    base64 PNG (``png``), decoded to numpy. Bytes: JSON text of both directions.
(d) batch 1 with pipelining (``--pipelined N``, the recommended client setting): N envs, one action per
    Step request, all N requests in flight on the one stream, against HTTP with N envs (min(N, 8)
    connections); the JSON's ``pipelined_vs_http_batch1`` sets it against the HTTP client at batch 1.
``--profile-server FILE`` writes the env server's cProfile top 30 (by own time) when it stops.
Each batch size runs ``--rounds`` alternating rounds (grpc, http, grpc, ...) and reports
medians, and the median of the per-round ratios, so a shared machine's load swings hit both.
Prints a table, then one JSON line with steps/s, bytes/step and the grpc/http ratio.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import io
import json
import multiprocessing as mp
import os
import random
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

ACTIONS = ["Up", "Down", "Left", "Right"]


# --- (b) the HTTP/JSON baseline --------------------------------------------------------
def run_http_server(port_queue, env_id: str, config: dict[str, str]) -> None:
    from atlasrl.envserver import registry

    envs: dict[int, object] = {}
    lock = __import__("threading").Lock()

    def observation(out) -> dict:
        buf = io.BytesIO()
        Image.fromarray(out.images[0]).save(buf, format="PNG")
        return {"image": base64.b64encode(buf.getvalue()).decode(), "text": out.text, "reward": out.reward,
                "terminated": out.terminated, "truncated": out.truncated, "success": out.success, "info": out.info,
                "agent": list(out.agent) if out.agent else None, "step": out.step, "layout_key": out.layout_key}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive
        disable_nagle_algorithm = True  # no 40 ms Nagle/delayed-ACK stalls: a fair baseline

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            if self.path == "/create":
                env = registry.make(env_id, config, body.get("seed"))
                with lock:
                    eid = len(envs) + 1
                    envs[eid] = env
                reply = {"env": eid}
            elif self.path == "/reset":
                reply = observation(envs[body["env"]].text_reset(seed=body.get("seed")))
            elif self.path == "/step":
                reply = observation(envs[body["env"]].text_step(body["action"]))
            else:
                self.send_error(404)
                return
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self._headers_buffer.append(b"\r\n" + data)  # headers and body in one write
            self.flush_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_queue.put(server.server_address[1])
    server.serve_forever()


class HttpEnv:
    def __init__(self, port: int, seed: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.bytes = 0
        self.env = self.call("/create", {"seed": seed})["env"]
        self.call("/reset", {"env": self.env, "seed": seed})

    def call(self, path: str, body: dict) -> dict:
        data = json.dumps(body).encode()
        self.conn.request("POST", path, data, {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        raw = resp.read()
        head = len(f"POST {path} HTTP/1.1\r\n") + 80 + len(str(resp.msg)) + 17  # request line + headers, status line + headers
        self.bytes += len(data) + len(raw) + head
        reply = json.loads(raw)
        if "image" in reply:
            reply["frame"] = np.asarray(Image.open(io.BytesIO(base64.b64decode(reply["image"]))))
        return reply

    def step(self, action: str) -> dict:
        obs = self.call("/step", {"env": self.env, "action": action})
        if obs["terminated"] or obs["truncated"]:
            self.call("/reset", {"env": self.env})
        return obs


def bench_http(port: int, batch: int, seconds: float) -> tuple[float, float]:
    envs = [HttpEnv(port, seed) for seed in range(batch)]
    for e in envs:
        e.bytes = 0
    rng = random.Random(0)
    steps = 0
    with ThreadPoolExecutor(min(batch, 8)) as pool:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            list(pool.map(lambda e: e.step(rng.choice(ACTIONS)), envs))
            steps += batch
        elapsed = time.perf_counter() - t0
    return steps / elapsed, sum(e.bytes for e in envs) / steps


# --- (a) our gRPC stream ----------------------------------------------------------------
def run_grpc_server(port_queue, env_id: str, workers: int, openenv: bool = False, profile: str = "",
                    frame_cache_mb: float | None = None) -> None:
    from atlasrl.envserver.config import EnvServerConfig
    from atlasrl.envserver.server import serve

    cfg = EnvServerConfig(port=0, workers=workers, envs=[env_id], max_envs=4096, openenv_port=0 if openenv else None,
                          **({} if frame_cache_mb is None else {"frame_cache_mb": frame_cache_mb}))
    run = lambda: asyncio.run(serve(cfg, on_ready=lambda s: port_queue.put((s.rpc.port, s.openenv.port if s.openenv else None))))  # noqa: E731
    if not profile:
        run()
        return
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.runcall(run)   # SIGTERM stops the server gracefully, so the profile of the whole run is written
    with open(profile, "w") as f:
        pstats.Stats(prof, stream=f).sort_stats("tottime").print_stats(30)


async def bench_grpc(port: int, env_id: str, config: dict[str, str], batch: int, seconds: float, inflight: int,
                     auto_reset: bool = True) -> tuple[float, float]:
    from atlasrl.clients.env import EnvClient, EnvObservation
    from atlasrl.v1 import env_pb2

    async with EnvClient(f"127.0.0.1:{port}") as client:
        handles = [(await client.open(env_id, config, seed=s))[0] for s in range(batch)]
        await asyncio.gather(*(client.reset(h, seed=s) for s, h in enumerate(handles)))
        groups = [handles[i::inflight] for i in range(min(inflight, batch))]
        rng = random.Random(0)
        totals = {"steps": 0, "bytes": 0}
        deadline = time.perf_counter() + seconds

        async def drive(group: list[int]) -> None:
            while time.perf_counter() < deadline:
                req = env_pb2.EnvRequest(step=env_pb2.StepRequest(actions=[env_pb2.Action(handle=h, text=rng.choice(ACTIONS)) for h in group],
                                                                  auto_reset=auto_reset))
                resp = await client.request(req)
                totals["bytes"] += req.ByteSize() + resp.ByteSize()
                done = []
                for r in resp.step.results:
                    obs = EnvObservation.from_proto(r.observation)  # decode the frame, as the HTTP client does
                    if r.HasField("reset_observation"):             # the next episode's first frame, too
                        EnvObservation.from_proto(r.reset_observation)
                    elif obs.done:
                        done.append(r.handle)
                # The finished episodes' resets go out together, pipelined on the stream, not one round trip each.
                resets = [env_pb2.EnvRequest(reset=env_pb2.ResetRequest(handle=h)) for h in done]
                for reset, rr in zip(resets, await asyncio.gather(*(client.request(r) for r in resets))):
                    totals["bytes"] += reset.ByteSize() + rr.ByteSize()
                totals["steps"] += len(group)

        t0 = time.perf_counter()
        await asyncio.gather(*(drive(g) for g in groups))
        elapsed = time.perf_counter() - t0
        await client.close(handles)
    return totals["steps"] / elapsed, totals["bytes"] / totals["steps"]


# --- (c) OpenEnv over WebSocket (openenv-core's client) ------------------------------------
async def bench_openenv(port: int, env_id: str, config: dict[str, str], batch: int, seconds: float, fmt: str) -> tuple[float, float]:
    from openenv.core import GenericEnvClient

    class Counting(GenericEnvClient):
        """openenv-core's client, counting the JSON text it sends and receives."""

        nbytes = 0

        async def _send(self, message):
            data = json.dumps(message)
            self.nbytes += len(data)
            await self._ensure_connected()
            await self._ws.send(data)

        async def _receive(self):
            raw = await asyncio.wait_for(self._ws.recv(), timeout=self._message_timeout)
            self.nbytes += len(raw)
            return json.loads(raw)

    def frame(obs: dict) -> np.ndarray:
        if fmt == "png":
            return np.asarray(Image.open(io.BytesIO(base64.b64decode(obs["image"]))))
        return np.asarray(obs["image"], np.uint8)

    clients = [Counting(base_url=f"http://127.0.0.1:{port}") for _ in range(batch)]
    for seed, c in enumerate(clients):
        await c.connect()
        await c.reset(env_id=env_id, seed=seed, config=config, image_format=fmt)
        c.nbytes = 0
    rng = random.Random(0)
    steps = 0

    async def one(c) -> None:
        r = await c.step({"action": rng.choice(ACTIONS)})
        frame(r.observation)
        if r.done:
            await c.reset(env_id=env_id, config=config)

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        await asyncio.gather(*(one(c) for c in clients))
        steps += batch
    elapsed = time.perf_counter() - t0
    for c in clients:
        await c.close()
    return steps / elapsed, sum(c.nbytes for c in clients) / steps


def start(target, *args, daemon: bool = True) -> tuple[mp.Process, int]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(q, *args), daemon=daemon)
    p.start()
    return p, q.get(timeout=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.5, help="measuring time per round and server")
    ap.add_argument("--rounds", type=int, default=5, help="alternating grpc/http rounds per batch size (medians reported)")
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--env", default="frozenlake")
    ap.add_argument("--size", default="4")
    ap.add_argument("--image-size", default="128")
    ap.add_argument("--workers", type=int, default=0, help="env server worker processes (0 = threads in the server process)")
    ap.add_argument("--inflight", type=int, default=2, help="batched Step requests kept in flight per stream")
    ap.add_argument("--pipelined", type=int, default=8,
                    help="extra row: this many envs, one action per Step request, all in flight on one stream "
                         "(batch 1 with pipelining, the recommended client setting), against HTTP with as many envs; 0 = off")
    ap.add_argument("--no-auto-reset", action="store_true",
                    help="the gRPC client resets finished envs with Reset requests (pipelined) instead of StepRequest.auto_reset")
    ap.add_argument("--frame-cache-mb", type=float, default=None,
                    help="EnvServerConfig.frame_cache_mb (encoded frames kept by content); 0 = off; default: the config's")
    ap.add_argument("--profile-server", default="", help="write the gRPC env server's cProfile top 30 (tottime) here")
    ap.add_argument("--openenv", default="", help="also bench the OpenEnv side with these image formats (list,png); needs openenv-core")
    args = ap.parse_args()
    openenv_formats = [f for f in args.openenv.split(",") if f]
    from atlasrl.envserver.config import EnvServerConfig
    frame_cache_mb = EnvServerConfig().frame_cache_mb if args.frame_cache_mb is None else args.frame_cache_mb
    config = {"size": args.size, "image_size": args.image_size}
    batches = [int(b) for b in args.batches.split(",")]

    http_proc, http_port = start(run_http_server, args.env, config)
    grpc_proc, (grpc_port, openenv_port) = start(run_grpc_server, args.env, args.workers, bool(openenv_formats),
                                                 args.profile_server, args.frame_cache_mb, daemon=False)  # it starts env workers itself
    rows = []
    plan = [(b, b, args.inflight) for b in batches]          # (label batch, envs, requests in flight)
    if args.pipelined:
        plan.append((1, args.pipelined, args.pipelined))
    try:
        for b, envs, inflight in plan:
            grpc_runs, http_runs = [], []
            openenv_runs: dict[str, list[tuple[float, float]]] = {f: [] for f in openenv_formats if envs == b}
            for _ in range(args.rounds):  # alternate, so load changes on a shared machine hit both alike
                grpc_runs.append(asyncio.run(bench_grpc(grpc_port, args.env, config, envs, args.seconds, inflight, not args.no_auto_reset)))
                http_runs.append(bench_http(http_port, envs, args.seconds))
                for f in openenv_formats:
                    assert openenv_port is not None
                    openenv_runs[f].append(asyncio.run(bench_openenv(openenv_port, args.env, config, b, args.seconds, f)))
            g_sps, g_bytes = (statistics.median(x) for x in zip(*grpc_runs))
            h_sps, h_bytes = (statistics.median(x) for x in zip(*http_runs))
            speedup = statistics.median(g[0] / h[0] for g, h in zip(grpc_runs, http_runs))
            rows.append({"batch": b, "envs": envs, "inflight": min(inflight, envs), "grpc_steps_per_s": round(g_sps, 1), "http_steps_per_s": round(h_sps, 1),
                         "speedup": round(speedup, 2), "grpc_bytes_per_step": round(g_bytes), "http_bytes_per_step": round(h_bytes),
                         "bytes_ratio": round(h_bytes / g_bytes, 1)})
            for f, runs in openenv_runs.items():
                o_sps, o_bytes = (statistics.median(x) for x in zip(*runs))
                rows[-1].update({f"openenv_{f}_steps_per_s": round(o_sps, 1), f"openenv_{f}_bytes_per_step": round(o_bytes)})
    finally:
        for p in (http_proc, grpc_proc):
            p.terminate()  # SIGTERM: the env server stops gracefully, workers included
            p.join(30)

    print(f"{args.env} {args.size}x{args.size} at {args.image_size} px, grpc workers={args.workers}, inflight={args.inflight}, "
          f"auto_reset={not args.no_auto_reset}, frame_cache_mb={frame_cache_mb:g}, "
          f"median of {args.rounds} alternating rounds of {args.seconds:g} s, {mp.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"{'batch':>5} | {'grpc steps/s':>12} | {'http steps/s':>12} | {'speedup':>7} | {'grpc B/step':>11} | {'http B/step':>11} | {'http/grpc bytes':>15}")
    for r in rows:
        label = str(r["batch"]) if r["envs"] == r["batch"] else f"1x{r['envs']}"
        print(f"{label:>5} | {r['grpc_steps_per_s']:>12,.0f} | {r['http_steps_per_s']:>12,.0f} | {r['speedup']:>6.1f}x | "
              f"{r['grpc_bytes_per_step']:>11,} | {r['http_bytes_per_step']:>11,} | {r['bytes_ratio']:>14.1f}x")
    for f in openenv_formats:
        print(f"openenv ({f} frames):")
        for r in rows:
            if f"openenv_{f}_steps_per_s" not in r:
                continue
            print(f"{r['batch']:>5} | {r[f'openenv_{f}_steps_per_s']:>12,.0f} steps/s | {r[f'openenv_{f}_bytes_per_step']:>11,} B/step")
    # The pipelined row against the HTTP client at batch 1 (one env, one connection: what it can do alone).
    piped = next((r for r in rows if r["envs"] != r["batch"]), None)
    single = next((r for r in rows if r["envs"] == r["batch"] == 1), None)
    vs_single = round(piped["grpc_steps_per_s"] / single["http_steps_per_s"], 2) if piped and single else None
    if vs_single is not None:
        print(f"pipelined 1x{piped['envs']} against HTTP at batch 1 (one connection): {vs_single:.1f}x")
    print(json.dumps({"bench": "env_throughput", "env": args.env, "size": int(args.size), "image_size": int(args.image_size),
                      "grpc_workers": args.workers, "inflight": args.inflight, "auto_reset": not args.no_auto_reset, "frame_cache_mb": frame_cache_mb, "load_avg": round(os.getloadavg()[0], 2),
                      "pipelined_vs_http_batch1": vs_single, "rows": rows}))


if __name__ == "__main__":
    main()
