"""Rich rendering of a ClusterStatus (used by `atlasrl status` and the `atlasrl up` display)."""
from __future__ import annotations

import time

from rich.console import Group
from rich.table import Table
from rich.text import Text

from atlasrl.v1 import coordinator_pb2 as pb

ROLE = {pb.ROLE_ENVSERVER: "envserver", pb.ROLE_ACTOR: "actor", pb.ROLE_LEARNER: "learner",
        pb.ROLE_MEMORY: "memory", pb.ROLE_OTHER: "other"}
STATE = {pb.RUN_STATE_RUNNING: "running", pb.RUN_STATE_PAUSED: "paused", pb.RUN_STATE_STOPPING: "stopping"}
# The counter that best says "this member is working", per role.
WORK_COUNTER = {"envserver": "env_steps", "actor": "env_steps", "learner": "samples_trained", "memory": "queries"}


def rates(history) -> dict[str, float]:
    """Per-second rate of each global counter over the history window."""
    if len(history) < 2:
        return {}
    a, b = history[0], history[-1]
    dt = max(b.time - a.time, 1e-9)
    return {k: (b.counters[k] - a.counters.get(k, 0)) / dt for k in b.counters}


def health(m: pb.MemberInfo, lease_hint_s: float = 10.0) -> Text:
    if not m.alive:
        return Text("dead", style="red")
    if m.last_heartbeat_age_s > lease_hint_s / 2:
        return Text("late", style="yellow")
    if m.last_error:
        return Text("errors", style="yellow")
    return Text("ok", style="green")


def render_status(st: pb.ClusterStatus) -> Group:
    view = st.view
    c = st.counters
    r = rates(st.history)
    episodes = c.get("actor.episodes", 0)
    success = c["actor.successes"] / episodes if episodes and "actor.successes" in c else st.gauges.get("actor.success_rate", float("nan"))
    head = Text.assemble(
        ("run ", "bold"), (STATE.get(view.run_state, "?"), "bold cyan"),
        f"   policy v{view.policy_version}   assignment gen {view.assignment_generation}"
        f"   max staleness {view.max_staleness}   uptime {st.uptime_s:.0f}s\n",
        f"env steps {c.get('actor.env_steps', 0):,} ({r.get('actor.env_steps', 0):.1f}/s)   episodes {episodes:,}"
        f"   success {success:.2f}   tokens {c.get('actor.tokens', 0):,}   samples trained {c.get('learner.samples_trained', 0):,}"
        f" ({r.get('learner.samples_trained', 0):.1f}/s)")
    table = Table(expand=False, header_style="bold")
    for col in ("role", "name", "address", "health", "hb age", "version", "lag", "capacity", "work", "rate/s", "errors", "last error"):
        table.add_column(col, overflow="fold", max_width=40 if col == "last error" else None)
    now = time.time()
    for m in sorted(st.members, key=lambda m: (m.role, m.name)):
        role = ROLE.get(m.role, "?")
        key = WORK_COUNTER.get(role, "")
        work = m.counters.get(key, 0)
        rate = work / max(now - m.registered_at, 1e-9) if key else 0.0
        lag = view.policy_version - m.policy_version if role == "actor" and min(m.policy_version, view.policy_version) >= 0 else ""
        table.add_row(role, m.name, m.address or "-", health(m), f"{m.last_heartbeat_age_s:.1f}s",
                      str(m.policy_version) if m.policy_version >= 0 else "-", str(lag), str(m.capacity),
                      f"{work:,} {key}" if key else "-", f"{rate:.1f}", str(m.error_count), m.last_error[:200])
    gauges = "   ".join(f"{k} {v:.4g}" for k, v in sorted(st.gauges.items()))
    return Group(head, table, Text(gauges, style="dim"))
