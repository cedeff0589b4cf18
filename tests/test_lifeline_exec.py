"""atlasrl.lifeline's exec entry (`python -m atlasrl.lifeline --parent PID -- CMD...`): the command it
becomes dies when the parent is SIGKILLed, through further execs (`nice`) too; a parent already gone
means the command never runs."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atlasrl.lifeline import lifeline_argv

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")]
REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(REPO))

# The parent starts the child through the lifeline (as the supervisor does) and reports its pid.
PARENT = ("import json, os, subprocess, sys; from atlasrl.lifeline import lifeline_argv; "
          "c = subprocess.Popen(lifeline_argv(os.getpid(), json.loads(sys.argv[1])), stdout=subprocess.PIPE, text=True); "
          "assert c.stdout.readline() == 'armed\\n'; print(c.pid, flush=True); c.wait()")
CHILD = [sys.executable, "-c", "import time; print('armed', flush=True); time.sleep(3600)"]


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("via_nice", [False, True], ids=["direct", "through-nice"])
def test_the_command_dies_with_its_sigkilled_parent(via_nice):
    import json

    if via_nice and not shutil.which("nice"):
        pytest.skip("no nice")
    argv = ["nice", "-n", "3", *CHILD] if via_nice else CHILD
    parent = subprocess.Popen([sys.executable, "-c", PARENT, json.dumps(argv)], stdout=subprocess.PIPE, text=True, env=ENV)
    child = int(parent.stdout.readline())
    try:
        assert _running(child)
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        assert b"atlasrl.lifeline" not in cmdline and cmdline[-2] == b"import time; print('armed', flush=True); time.sleep(3600)"
        parent.kill()
        parent.wait()
        t0 = time.monotonic()
        while _running(child) and time.monotonic() - t0 < 5:   # the kernel's signal: well under a second
            time.sleep(0.05)
        assert not _running(child), "the command outlived its SIGKILLed parent"
    finally:
        if _running(child):
            os.kill(child, signal.SIGKILL)


def test_a_parent_already_gone_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    r = subprocess.run(lifeline_argv(1 if os.getpid() != 1 else 2, [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]),
                       env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and not marker.exists()
    assert "is gone" in r.stderr


def test_a_missing_command_exits_127():
    r = subprocess.run(lifeline_argv(os.getpid(), ["no-such-command-atlasrl"]), env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 127 and "cannot run no-such-command-atlasrl" in r.stderr


def test_usage_errors():
    r = subprocess.run([sys.executable, "-m", "atlasrl.lifeline", "--parent", "x", "--", "true"], env=ENV,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "usage" in r.stderr
