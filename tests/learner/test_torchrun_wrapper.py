"""`atlasrl learner`'s torchrun wrapper: a stop it forwarded exits 0 however torchrun ends; a crash keeps its code.

The wrapper runs as a real process with a stand-in for torchrun that behaves like
torchrun's agent on SIGTERM (exit 1 after SignalException, or an abort at exit).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

STAND_INS = {
    "exits_1": "signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))",
    "aborts": "signal.signal(signal.SIGTERM, lambda *a: os.abort())",
    "dies_of_sigterm": "",
}


def wrapper(tmp_path: Path, on_sigterm: str, then: str = "time.sleep(60)") -> subprocess.Popen:
    ready = tmp_path / "ready"
    child = "; ".join(filter(None, ["import os, signal, sys, time", on_sigterm, f"open({str(ready)!r}, 'w').close()", then]))
    code = ("import os, sys; from atlasrl.cli.learner import _run_torchrun; "
            f"sys.exit(_run_torchrun([sys.executable, '-c', {child!r}], dict(os.environ)))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert time.monotonic() < deadline, "the stand-in never started"
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("how", sorted(STAND_INS))
def test_a_forwarded_stop_exits_0(tmp_path, how):
    proc = wrapper(tmp_path, STAND_INS[how])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


@pytest.mark.parametrize("then, code", [("sys.exit(3)", 3), ("os.abort()", 256 - signal.SIGABRT)])
def test_a_crash_without_a_stop_keeps_its_code(tmp_path, then, code):
    proc = wrapper(tmp_path, "", then)
    assert proc.wait(30) == code
