"""Make a child process die with its parent, even when the parent is SIGKILLed and cleans nothing up.

    die_with_parent(parent_pid)          # first thing in the child; parent_pid = os.getpid() taken in the parent

An env worker notices a dead parent by EOF on its pipe, but only once it reads the pipe again: one
stuck in an env call (a hung ManiSkill render, a long GPU step) would live on as an orphan holding
its GPU memory. On Linux, ``PR_SET_PDEATHSIG`` has the kernel send SIGKILL the moment the parent
exits, whatever the child is doing. (The kernel ties it to the parent *thread* that started the
child: start children from a thread that lives as long as the process, such as the event loop's.)
Elsewhere, and as a fallback, a daemon thread polls ``os.getppid()`` and exits the process once it
has been reparented; that thread needs the GIL, so it cannot end a child stuck in C code.

A child that is not Python (or must not run Python between fork and exec: gRPC's fork handlers) is
started through the exec entry instead, which arms the signal and then replaces itself with the
command (the death signal survives ``execve`` of a non-setuid program)::

    argv = lifeline_argv(os.getpid(), ["nice", "-n", "5", "python", "-m", ...])
    # = [python, -m, atlasrl.lifeline, --parent, PID, --, nice, -n, 5, python, -m, ...]

Only the kernel signal covers that case (no thread survives the exec): on a platform without
``PR_SET_PDEATHSIG`` the command runs unprotected.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger("atlasrl")

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent exits; False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)      # the C library Python itself is linked against
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int, *, poll_s: float = 1.0, death_signal: bool = True) -> None:
    """Exit this process when ``parent_pid`` is gone (``death_signal=False``: the polling thread only)."""
    _arm(parent_pid, death_signal)
    threading.Thread(target=_watch, args=(parent_pid, poll_s), name="atlasrl-lifeline", daemon=True).start()


def _arm(parent_pid: int, death_signal: bool = True) -> None:
    """Ask for SIGKILL when the parent exits; exit now if ``parent_pid`` is already gone."""
    if death_signal:
        set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent_pid:       # the parent died before prctl took effect: no signal will come
        _exit(parent_pid)


def _watch(parent_pid: int, poll_s: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    _exit(parent_pid)


def lifeline_argv(parent_pid: int, argv: list[str]) -> list[str]:
    """``argv`` run so that it gets SIGKILL when ``parent_pid`` (the process that starts it) exits."""
    return [sys.executable, "-m", "atlasrl.lifeline", "--parent", str(parent_pid), "--", *argv]


def exec_with_lifeline(parent_pid: int, argv: list[str]) -> None:
    """Arm the parent-death signal, check the parent is still ``parent_pid``, then exec ``argv`` (never returns)."""
    _arm(parent_pid)
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        sys.stderr.write(f"atlasrl.lifeline: cannot run {argv[0]}: {e}\n")
        os._exit(127)


def main(args: list[str] | None = None) -> None:
    args = sys.argv[1:] if args is None else args
    usage = "usage: python -m atlasrl.lifeline --parent PID -- COMMAND [ARGS...]"
    if len(args) < 4 or args[0] != "--parent" or args[2] != "--" or not args[1].isdigit():
        sys.exit(usage)
    exec_with_lifeline(int(args[1]), args[3:])


def _exit(parent_pid: int) -> None:
    log.error("parent process %d is gone; pid %d exits with it", parent_pid, os.getpid())
    os._exit(1)


if __name__ == "__main__":
    main()
