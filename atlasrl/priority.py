"""Lower this process's CPU priority so that it really yields the cores, also to processes in other sessions.

    lower_priority(10)      # first thing in a role, before any thread exists (new threads inherit the value)

``os.nice`` alone is not enough on Linux with autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``
= 1, the default of most distributions): CFS first shares the CPU between *autogroups* (one per session, i.e.
per ``setsid``), and a thread's nice value only weighs against threads of its own group. ``atlasrl up`` starts
every role in its own session (so a Ctrl-C in the terminal reaches only ``up``, which stops the roles in order),
so a niced actor still took half the machine from the learner: on 2 cores the learner's first miniworld-nav
updates ran 6-8x slower than once the actor idled (35-50 s against 5-6 s, same token counts). The autogroup
has its own nice value, in ``/proc/self/autogroup``; a process may raise it (lower its group's share) without
privileges, so this sets it to the process's new nice value as well. Elsewhere (no autogroup file, other
platforms) only ``os.nice`` applies.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

AUTOGROUP = Path("/proc/self/autogroup")


def lower_priority(increment: int) -> int:
    """Add ``increment`` to this process's nice value and give its autogroup the same; returns the new nice."""
    if increment <= 0:
        return os.nice(0)
    nice = os.nice(increment)
    try:
        AUTOGROUP.write_text(str(nice))
    except FileNotFoundError:   # no autogroup scheduling here: the thread's nice is all there is
        pass
    except OSError as e:        # e.g. a read-only /proc in a container: nice still orders threads within the group
        log.warning("could not set the autogroup nice (%s): the priority holds only within this session", e)
    return nice


def autogroup_nice(pid: int | str = "self") -> int | None:
    """The nice value of a process's autogroup (``/autogroup-N nice V``), None without autogroup scheduling."""
    try:
        text = Path(f"/proc/{pid}/autogroup").read_text()
    except OSError:
        return None
    return int(text.split()[-1])
