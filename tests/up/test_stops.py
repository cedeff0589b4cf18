"""Stops of a real `atlasrl up` that are not Ctrl-C: no process of the run may outlive it.

- Its terminal hangs up (closed window, dropped ssh): the kernel sends SIGHUP and every later write to
  the terminal fails with EIO. `up` stops as on Ctrl-C and exits 0.
- It is SIGKILLed: it can stop nothing, yet every process it started, and theirs (torchrun's ranks,
  env-server workers), dies within seconds (the parent-death signal of atlasrl/lifeline.py, per hop).

Every descendant is collected (recursively) before the stop; whatever is left is killed in `finally`.
"""
import fcntl
import json
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import psutil
import pytest

from atlasrl.up.plan import role_available

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900),
              pytest.mark.skipif(not all(role_available(r) for r in ("envserver", "memory", "learner", "actor")),
                                 reason="needs every role")]
ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--set", "run.eval_episodes=0", "--set", "actor.num_envs=4", "--set", "actor.group_size=2",
         "--set", "envserver.workers=1"]   # one env worker process: a grandchild that must go too


def up_argv(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "atlasrl.up.launch", "up", "--run-dir", str(run_dir), *SMALL, *extra]


def wait_for_actor(up: subprocess.Popen, run_dir: Path, timeout: float = 600) -> None:
    log = run_dir / "logs" / "actor-0.log"
    deadline = time.monotonic() + timeout
    while not log.exists() or "serving" not in log.read_text():
        assert up.poll() is None, f"atlasrl up exited early with code {up.returncode}"
        assert time.monotonic() < deadline, "actor never started"
        time.sleep(1)


def descendants(pid: int) -> list[psutil.Process]:
    procs = psutil.Process(pid).children(recursive=True)
    cmdlines = [" ".join(p.cmdline()) for p in procs]
    # every hop is there: the roles, torchrun and its rank, the env server's worker
    for part in ("coordinator", "envserver", "memory", "torch.distributed.run", "atlasrl.learner.main", "spawn_main", "actor"):
        assert any(part in c for c in cmdlines), f"no {part} among {cmdlines}"
    return procs


def kill_leftovers(procs: list[psutil.Process]) -> None:
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


def test_terminal_hangup_stops_everything_cleanly(tmp_path):
    run_dir = tmp_path / "run"
    master, slave = pty.openpty()

    def controlling_terminal():  # `up` leads its own session with the pty as its terminal, as in a login shell
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    up = subprocess.Popen(up_argv(run_dir), cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                          preexec_fn=controlling_terminal)
    os.close(slave)
    output = bytearray()
    reading = threading.Event()
    reading.set()

    def drain():  # what a terminal shows; the live display keeps writing
        while reading.is_set():
            if select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                output.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    children: list[psutil.Process] = []
    closed = False
    try:
        wait_for_actor(up, run_dir)
        children = descendants(up.pid)
        reading.clear()
        reader.join()
        t0 = time.monotonic()
        os.close(master)  # the terminal goes away: SIGHUP to its session leader, EIO on every write after it
        closed = True
        code = up.wait(timeout=300)
        print(f"atlasrl up exited {time.monotonic() - t0:.1f}s after its terminal hung up")
        _, alive = psutil.wait_procs(children, timeout=10)
    finally:
        reading.clear()
        reader.join()
        if not closed:
            os.close(master)
        if up.poll() is None:
            up.kill()
            up.wait()
        kill_leftovers(children)
    assert code == 0, bytes(output[-3000:]).decode(errors="replace")
    assert not alive, [p.pid for p in alive]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "interrupted"
    events = " ".join(summary["events"])
    assert "interrupted: stopping cleanly" in events
    assert "killing its process group" not in events  # every role stopped on SIGTERM


def test_sighup_stops_everything_cleanly(tmp_path):
    run_dir = tmp_path / "run"
    up = subprocess.Popen(up_argv(run_dir, "--no-display"), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    children: list[psutil.Process] = []
    try:
        wait_for_actor(up, run_dir)
        children = descendants(up.pid)
        t0 = time.monotonic()
        up.send_signal(signal.SIGHUP)
        out, _ = up.communicate(timeout=300)
        print(f"atlasrl up exited {time.monotonic() - t0:.1f}s after SIGHUP")
        _, alive = psutil.wait_procs(children, timeout=10)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        kill_leftovers(children)
    assert up.returncode == 0, out[-3000:]
    assert "interrupted: stopping cleanly" in out
    assert not alive, [p.pid for p in alive]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "interrupted"
    assert "killing its process group" not in " ".join(summary["events"])


def test_sigkill_leaves_no_process_behind(tmp_path):
    run_dir = tmp_path / "run"
    up = subprocess.Popen(up_argv(run_dir, "--no-display"), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[psutil.Process] = []
    try:
        wait_for_actor(up, run_dir)
        children = descendants(up.pid)
        up.kill()
        up.wait()
        t0 = time.monotonic()
        gone, alive = psutil.wait_procs(children, timeout=10)
        print(f"{len(gone)} processes gone {time.monotonic() - t0:.2f}s after SIGKILL of atlasrl up")
        assert not alive, [" ".join(p.cmdline()) for p in alive if p.is_running()]
    finally:
        kill_leftovers(children)
