"""The live progress display of `atlasrl up` (rich), or plain progress lines when there is no terminal."""
from __future__ import annotations

import math
import time

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from atlasrl.up.progress import EPISODES, LOSS_GAUGE, RETURN_GAUGE, STEPS, Sample, recent_success
from atlasrl.up.status_table import rates, render_status


def _fmt(x: float, spec: str = ".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def policy_version(st) -> int:
    """The learner's version as the coordinator knows it; before the learner reports one, the newest
    version any live actor acts with."""
    if st.view.policy_version >= 0:
        return st.view.policy_version
    return max((m.policy_version for m in st.members if m.alive), default=-1)


def headline(st, samples: list[Sample], elapsed_s: float) -> dict:
    """The numbers the display and the progress log show."""
    c, g = st.counters, st.gauges
    success, n = recent_success(samples)
    r = rates(st.history[-10:]) if len(st.history) > 1 else {}
    return {"elapsed_s": round(elapsed_s, 1), "env_steps": c.get(STEPS, 0), "steps_per_s": round(r.get(STEPS, 0.0), 1),
            "episodes": c.get(EPISODES, 0), "success_recent": success, "success_window": n,
            "policy_version": policy_version(st), "loss": g.get(LOSS_GAUGE, float("nan")),
            "return_mean": g.get(RETURN_GAUGE, float("nan")), "samples_trained": c.get("learner.samples_trained", 0)}


def render(st, samples: list[Sample], supervisor, run_dir, elapsed_s: float, limits: str):
    h = headline(st, samples, elapsed_s)
    top = Table.grid(padding=(0, 3))
    for _ in range(4):
        top.add_column()
    top.add_row("elapsed", f"{h['elapsed_s']:.0f}s {limits}", "policy version", str(h["policy_version"]))
    top.add_row("env steps", f"{h['env_steps']:,} ({h['steps_per_s']:.1f}/s)", "samples trained", f"{h['samples_trained']:,}")
    top.add_row("episodes", f"{h['episodes']:,}", "loss", _fmt(h["loss"], ".4f"))
    top.add_row("success (recent)", f"{_fmt(h['success_recent'], '.2f')} over {h['success_window']} ep",
                "mean return", _fmt(h["return_mean"], ".3f"))
    events = Text("\n".join(f"{time.strftime('%H:%M:%S', time.localtime(t))} {e}" for t, e in supervisor.events[-5:]),
                  style="yellow")
    parts: list[RenderableType] = [top, render_status(st)]
    if supervisor.events:
        parts.append(Panel(events, title="supervisor", border_style="yellow"))
    return Panel(Group(*parts), title=f"atlasrl up  [dim]{run_dir}[/dim]", subtitle="Ctrl-C stops cleanly")


def line(st, samples: list[Sample], elapsed_s: float) -> str:
    h = headline(st, samples, elapsed_s)
    return (f"[{h['elapsed_s']:7.0f}s] steps {h['env_steps']:>8,} ({h['steps_per_s']:.1f}/s) episodes {h['episodes']:>6,} "
            f"success {_fmt(h['success_recent'], '.2f')} v{h['policy_version']} loss {_fmt(h['loss'], '.4f')}")
