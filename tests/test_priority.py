"""A niced role yields the CPU to a role in another session (`atlasrl up` starts each role with setsid)."""
import subprocess
import sys
import textwrap

import pytest

from atlasrl.priority import autogroup_nice

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux scheduling (sched_setaffinity)")

SPIN = textwrap.dedent("""
    import os, sys, time
    os.sched_setaffinity(0, {0})            # both on one core: the scheduler must choose between them
    if int(sys.argv[1]):
        from atlasrl.priority import lower_priority
        lower_priority(int(sys.argv[1]))
    print("ready", flush=True)
    sys.stdin.readline()                    # start together
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.5:
        pass
    print(time.process_time(), flush=True)
""")


def _spin(increment: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SPIN, str(increment)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)   # its own session, hence its own autogroup


def test_a_niced_process_in_another_session_yields_the_core():
    low, normal = _spin(19), _spin(0)
    try:
        for p in (low, normal):
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        assert autogroup_nice(low.pid) in (None, 19)   # None: no autogroup scheduling on this kernel
        for p in (low, normal):
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        cpu = {name: float(p.communicate(timeout=30)[0].split()[-1]) for name, p in (("low", low), ("normal", normal))}
    finally:
        for p in (low, normal):
            p.kill()
    # nice 19 against 0 weighs 15 : 1024. With os.nice alone and autogroups, both got ~half the core.
    assert cpu["normal"] > 4 * cpu["low"], cpu
