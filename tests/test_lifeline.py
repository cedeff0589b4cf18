"""atlasrl.lifeline's polling fallback: a child whose parent is SIGKILLed exits (the parent-death signal is tested in tests/envserver/test_cli.py)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

CHILD = ("import os, sys, time; from atlasrl.lifeline import die_with_parent; "
         "die_with_parent(int(sys.argv[1]), poll_s=0.1, death_signal=False); print('armed', flush=True); time.sleep(3600)")
PARENT = ("import os, subprocess, sys; "
          "c = subprocess.Popen([sys.executable, '-c', sys.argv[1], str(os.getpid())], stdout=subprocess.PIPE, text=True); "
          "assert c.stdout.readline() == 'armed\\n'; print(c.pid, flush=True); c.wait()")


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_polling_fallback_ends_a_child_whose_parent_was_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        assert _running(child)
        parent.kill()
        parent.wait()
        for _ in range(600):
            if not _running(child):
                break
            time.sleep(0.1)
        assert not _running(child), "the child outlived its SIGKILLed parent"
    finally:
        if _running(child):
            os.kill(child, signal.SIGKILL)
