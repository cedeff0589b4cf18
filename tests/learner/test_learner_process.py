"""The learner as it runs for real: CLI -> torchrun -> rank 0 serving gRPC; actors push, subscribers receive.

Also: metrics on /metrics, SIGTERM saves a checkpoint, a restarted learner
resumes the version numbering and the buffer, and `learner export` writes the
weights that were streamed.
"""
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from atlasrl.clients.coordinator import CoordinatorClient
from atlasrl.clients.trajectory import TrajectorySender
from atlasrl.clients.weights import WeightSubscriber

from .helpers import episode, turn

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def start_learner(model_dir, ckpt, ready, *extra):
    ready.unlink(missing_ok=True)
    cmd = [sys.executable, "-c", "from atlasrl.cli.learner import learner_app; learner_app()",
           "--model", model_dir, "--port", "0", "--metrics-port", "0", "--ckpt-dir", str(ckpt),
           "--ready-file", str(ready), "--batch-episodes", "2", "--lr", "1e-3", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not ready.exists() or not ready.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"learner did not start (rc={proc.poll()}):\n{proc.stdout.read()}")
        time.sleep(0.2)
    return proc, json.loads(ready.read_text())


def group(name, version, rewards=(0.0, 1.0)):
    return [episode([turn([1, 2, 3, 4], [5 + i, 6], reward=r, version=version, logprob=-5.0)], group=name, group_size=len(rewards))
            for i, r in enumerate(rewards)]


async def push_and_watch(addr, groups, until_version):
    """Push episodes with the real sender; return every weight version seen up to ``until_version``."""
    seen = {}

    async def watch():
        async for wv in WeightSubscriber(addr, reconnect=False).versions():
            seen[wv.version] = wv
            if wv.version >= until_version:
                return

    task = asyncio.create_task(watch())
    async with TrajectorySender(addr) as sender:
        for g in groups:
            for ep in g:
                await sender.put(ep)
        await sender.flush(60)
    await asyncio.wait_for(task, 240)
    return seen


def scrape(port):
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()


class CoordinatorThread:
    """The real coordinator server on its own loop, as `atlasrl up` starts it."""

    def __init__(self, tmp_path):
        from atlasrl.coordinator.config import CoordinatorConfig
        from atlasrl.coordinator.server import CoordinatorServer
        from atlasrl.rpc import ServerConfig

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        async def start():   # grpc.aio servers are built inside their loop
            server = CoordinatorServer(CoordinatorConfig(server=ServerConfig(port=0), state_dir=tmp_path / "coord"))
            await server.start()
            return server

        self.server = self.call(start())

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self):
        self.call(self.server.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_train_from_pushed_episodes_restart_and_export(tiny_model_dir, tmp_path):
    ckpt, ready = tmp_path / "ckpt", tmp_path / "ready.json"
    proc, info = start_learner(tiny_model_dir, ckpt, ready)
    try:
        addr = f"127.0.0.1:{info['port']}"
        assert info["version"] == 0
        seen = asyncio.run(push_and_watch(addr, [group("a", 0), group("b", 0)], until_version=2))
        assert sorted(seen)[-2:] == [1, 2]
        text = scrape(info["metrics_port"])
        assert "atlasrl_learner_samples_consumed_total 4.0" in text and "atlasrl_learner_weight_publish_seconds_bucket" in text
        assert 'atlasrl_learner_staleness_versions_bucket{le="0.0"} 2.0' in text    # group b trained one version late
        assert "atlasrl_learner_updates_total 2.0" in text and "atlasrl_learner_policy_version 2.0" in text
        proc.send_signal(signal.SIGTERM)   # torchrun forwards it; the worker stops after a final checkpoint
        proc.wait(120)                     # (torchrun itself exits 1 when signalled)
    finally:
        proc.kill()
    assert (ckpt / "step-00000002" / "COMPLETE").exists(), proc.stdout.read()

    # Restart under a coordinator: numbering continues at 2; version-2 episodes train into version 3;
    # the coordinator sees the learner's counters and version; STOPPING ends the learner cleanly.
    coord = CoordinatorThread(tmp_path)
    try:
        proc, info = start_learner(tiny_model_dir, ckpt, ready, "--coordinator", coord.server.address)
        try:
            assert info["version"] == 2
            addr = f"127.0.0.1:{info['port']}"
            seen = asyncio.run(push_and_watch(addr, [group("c", 2)], until_version=3))
            assert min(seen) == 2 and 3 in seen
            client = CoordinatorClient(coord.server.address)
            deadline = time.monotonic() + 60
            while True:
                st = coord.call(client.status())
                if st.counters.get("learner.samples_trained", 0) == 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert st.counters["learner.samples_trained"] == 2 and st.view.policy_version == 3
            assert "learner.loss" in st.gauges
            coord.call(client.set_run_state("stopping", reason="test"))
            assert proc.wait(120) == 0
        finally:
            proc.kill()
    finally:
        coord.close()
    assert (ckpt / "step-00000003" / "COMPLETE").exists()

    # export writes exactly what version 3 streamed (fp32 master weights -> bf16 on the wire)
    out = tmp_path / "hf"
    r = subprocess.run([sys.executable, "-c", "from atlasrl.cli.learner import learner_app; learner_app()", "export",
                        "--ckpt", str(ckpt), "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 0 and "exported version 3" in r.stdout, r.stdout + r.stderr
    from safetensors.numpy import load_file

    exported = load_file(str(out / "model.safetensors"))
    streamed = seen[3].tensors
    assert set(streamed) <= set(exported)
    for name, arr in streamed.items():
        assert np.array_equal(exported[name].astype(ml_dtypes.bfloat16).view(np.uint16), arr.view(np.uint16)), name


def test_crash_loses_no_acknowledged_episode_retrains_none_and_never_reuses_a_version(tiny_model_dir, tmp_path):
    """SIGKILL the learner (wrapper, torchrun and rank) one update after its last checkpoint, then restart it.

    The update after the checkpoint died with the process: its episodes train again (once, in the surviving
    lineage), an acknowledged episode still waiting for its group survives, the restored weights come back
    under a version above every published one, and episodes of the dead version are accepted.
    """
    import sqlite3

    import psutil

    ckpt, ready = tmp_path / "ckpt", tmp_path / "ready.json"
    cfg = tmp_path / "learner.json"
    cfg.write_text(json.dumps({"ckpt_every": 2}))
    flags = ("--config", str(cfg), "--max-staleness", "10")   # no episode here is refused as stale
    proc, info = start_learner(tiny_model_dir, ckpt, ready, *flags)
    lone = group("e", 0)
    try:
        addr = f"127.0.0.1:{info['port']}"
        seen = asyncio.run(push_and_watch(addr, [group("a", 0), group("b", 0), group("c", 0), lone[:1]], until_version=3))
        assert max(seen) == 3
        assert (ckpt / "step-00000002" / "COMPLETE").exists() and not (ckpt / "step-00000003").exists()
        tree = [proc, *psutil.Process(proc.pid).children(recursive=True)]
        for p in tree:
            p.kill()
        psutil.wait_procs([psutil.Process(p.pid) for p in tree[1:] if psutil.pid_exists(p.pid)], timeout=30)
    finally:
        proc.kill()
    proc, info = start_learner(tiny_model_dir, ckpt, ready, *flags)
    try:
        assert info["version"] == 4, info    # checkpoint 2 restored; 3 was published, so its weights are now 4
        addr = f"127.0.0.1:{info['port']}"
        # c (rolled back) trains again -> 5, then e completes with its second member -> 6, then f (made by the
        # dead version 3: accepted, it is an old version now, not an unknown one) -> 7
        seen = asyncio.run(push_and_watch(addr, [lone[1:], group("f", 3)], until_version=7))
        assert max(seen) == 7   # (the watcher may connect after c already trained into 5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    finally:
        proc.kill()
    db = sqlite3.connect(ckpt / "ledger.sqlite")
    states = dict(db.execute("SELECT state, COUNT(*) FROM episodes GROUP BY state"))
    assert states == {"trained": 10}, states     # groups a, b, c, e, f
    live = dict(db.execute("SELECT episode_id, COUNT(*) FROM train_events WHERE rolled_back=0 GROUP BY episode_id"))
    assert len(live) == 10 and set(live.values()) == {1}          # every episode trained once in the lineage
    rolled = db.execute("SELECT COUNT(*), MIN(update_version), MAX(update_version) FROM train_events "
                        "WHERE rolled_back=1").fetchone()
    assert rolled == (2, 3, 3)                                     # group c's update of version 3 was lost
    assert db.execute("SELECT value FROM meta WHERE key='published_version'").fetchone()[0] == "7"
