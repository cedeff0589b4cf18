"""Envs in worker processes: load-balanced placement, split batches, per-device workers, a worker dying."""
from __future__ import annotations

import asyncio
import os
import signal

import grpc
import numpy as np
import pytest

from atlasrl.clients.env import EnvClient
from atlasrl.envserver.workers import ProcessWorker

pytestmark = pytest.mark.timeout(120)


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv]
    return {k.decode(): v.decode() for k, v in pairs}


async def test_two_workers_split_batches_and_match_in_process_results(start_server):
    server = await start_server(workers=2, devices=["3", "5"])
    local = await start_server(workers=0)
    workers = server.pool.workers
    assert all(isinstance(w, ProcessWorker) for w in workers)
    assert [_environ(w.proc.pid).get("CUDA_VISIBLE_DEVICES") for w in workers] == ["3", "5"]
    assert os.environ.get("CUDA_VISIBLE_DEVICES") != "3", "the server's own environment must stay untouched"

    async with EnvClient(server.address) as remote, EnvClient(local.address) as inproc:
        handles = {}
        for c in (remote, inproc):
            handles[c] = [(await c.open("frozenlake", {"size": "4"}, seed=s))[0] for s in range(4)]
            await asyncio.gather(*(c.reset(h, seed=s) for s, h in enumerate(handles[c])))
        assert sorted(len(w.handles) for w in workers) == [2, 2], "envs are placed by load"
        for actions in ("Right", "Down", "Right, Down"):
            a = await remote.step({h: actions for h in handles[remote]})
            b = await inproc.step({h: actions for h in handles[inproc]})
            assert [r.handle for r in a] == handles[remote]
            for ra, rb in zip(a, b):
                if rb.error is not None:
                    assert ra.error is not None and ra.error.code == rb.error.code
                    continue
                oa, ob = ra.unwrap(), rb.unwrap()
                assert (oa.text, oa.reward, oa.agent, oa.step) == (ob.text, ob.reward, ob.agent, ob.step)
                assert np.array_equal(oa.images[0], ob.images[0])


async def test_a_dying_worker_fails_only_its_envs(start_server):
    server = await start_server(workers=2)
    async with EnvClient(server.address) as c:
        handles = [(await c.open("frozenlake", seed=s))[0] for s in range(4)]
        for h in handles:
            await c.reset(h)
        victim = server.pool.workers[0]
        lost = set(victim.handles)
        os.kill(victim.proc.pid, signal.SIGKILL)
        results = await c.step({h: "Right" for h in handles})
        for h, r in zip(handles, results):
            if h in lost:
                assert r.error is not None
                assert r.error.status_code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED)
                assert "worker 0" in r.error.message
            else:
                assert r.unwrap().step == 1
        for _ in range(100):  # wait for the death to be noticed
            if server.pool.workers[0] is not victim:
                break
            await asyncio.sleep(0.05)
        [r] = await c.step({sorted(lost)[0]: "Right"})
        assert r.error.status_code == grpc.StatusCode.ABORTED and "was lost" in r.error.message
        assert await c.close(handles) == 4
        assert server.manager.live == 0
        # the replacement worker serves new envs
        new = [(await c.open("sokoban", seed=s))[0] for s in range(2)]
        assert [(await c.reset(h)).step for h in new] == [0, 0]
        assert sorted(len(w.handles) for w in server.pool.workers) == [1, 1]
