"""Longer fuzz campaign over every RPC of every service on main (the CI suite's engine, more cases).

    .venv/bin/python bench/fuzz.py [--cases 2000] [--only memory,learner] [--seed-offset 0]

Starts the real servers (tests/security/services.py), then for each RPC runs
``--cases`` hypothesis examples of hostile payloads (random, truncated, mutated,
extreme, deep nesting, codec lies / zstd bombs) and, as the baseline in the same
run, ``--cases // 10`` valid-message examples. Reports cases/s for both, the
hostile/valid throughput ratio, and every failure found (kind + seed reproduce it:
``payload(method.input_type, kind, seed, b"")``). Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security.fuzz.engine import KINDS, call, healthy, payload, problems
from security.services import Stack

from atlasrl.rpc import make_channel
from atlasrl.rpc.config import ChannelConfig


def campaign(stack, hosted, md, cases: int, kinds, failures: list) -> float:
    ch = make_channel(hosted.address, ChannelConfig(max_message_bytes=64 << 20), aio=False)
    n = [0]

    @settings(max_examples=cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(kind=st.sampled_from(kinds), seed=st.integers(0, 2**32 - 1), raw=st.binary(max_size=4096))
    def one(kind, seed, raw):
        n[0] += 1
        before = stack.state(hosted)
        out = call(ch, md, payload(md.input_type, kind, seed, raw))
        bad = problems(md, out)
        if out.code != grpc.StatusCode.OK and stack.state(hosted) != before:
            bad.append("rejected but state changed")
        if not healthy(ch, md.containing_service.full_name):
            bad.append("not SERVING afterwards")
        if bad:
            failures.append({"rpc": md.full_name, "kind": kind, "seed": seed, "problems": bad})

    t0 = time.perf_counter()
    try:
        one()
    finally:
        ch.close()
    return n[0] / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=2000, help="hostile cases per RPC")
    ap.add_argument("--only", default="", help="comma-separated roles (envserver, memory, coordinator, learner)")
    args = ap.parse_args()
    os.environ.setdefault("ATLASRL_LOG_LEVEL", "ERROR")
    only = {r for r in args.only.split(",") if r}
    hostile = tuple(k for k in KINDS if k != "valid")
    rows, failures = [], []
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp)).start()
        try:
            for hosted in stack.hosted:
                if only and hosted.role not in only:
                    continue
                for svc in hosted.services:
                    for md in svc.methods:
                        base = campaign(stack, hosted, md, max(10, args.cases // 10), ("valid",), failures)
                        rate = campaign(stack, hosted, md, args.cases, hostile, failures)
                        found = sum(1 for f in failures if f["rpc"] == md.full_name)
                        rows.append({"rpc": md.full_name, "cases": args.cases, "hostile_cases_per_s": round(rate, 1),
                                     "valid_cases_per_s": round(base, 1), "ratio": round(rate / base, 2), "failures": found})
                        print(f"{md.full_name:55s} {rate:9.1f}/s hostile {base:9.1f}/s valid  x{rate / base:5.2f}  failures {found}",
                              flush=True)
        finally:
            stack.stop()
    total = sum(r["cases"] for r in rows)
    print(f"\n{len(rows)} RPCs, {total} hostile cases, {len(failures)} failures")
    for f in failures[:30]:
        print(f"  {f['rpc']} kind={f['kind']} seed={f['seed']}: {f['problems']}")
    print(json.dumps({"bench": "fuzz", "rpcs": len(rows), "hostile_cases": total, "failures": len(failures), "per_rpc": rows,
                      "failure_samples": failures[:30]}))


if __name__ == "__main__":
    main()
