"""`atlasrl up`: start every role on this machine, show live progress, stop cleanly on Ctrl-C."""
from __future__ import annotations

from pathlib import Path

import typer

from atlasrl.config.loader import DEFAULT_PRESET


def register(app: typer.Typer) -> None:
    @app.command("up")
    def up(
        config: Path = typer.Option(None, "--config", "-c", help="Run config file (.toml, .yaml or .json) over the preset; "
                                    "see `atlasrl config show`."),
        preset: str = typer.Option(DEFAULT_PRESET, "--preset", "-p", help="Preset the config starts from: a shipped name "
                                   "(`atlasrl config presets`), a file, or 'none' (the role configs' defaults)."),
        env: str = typer.Option(None, help="Env id (shortcut for --set actor.env_id=ENV)."),
        set_: list[str] = typer.Option([], "--set", help="Config override, e.g. --set actor.num_envs=8 (repeatable)."),
        duration: float = typer.Option(None, "--duration", help="Stop after this many seconds (run.duration_s)."),
        max_steps: int = typer.Option(None, "--max-steps", help="Stop after this many env steps (run.max_env_steps)."),
        run_dir: Path = typer.Option(None, help="Exact run directory (reusing one resumes it)."),
        no_display: bool = typer.Option(False, "--no-display", help="Plain progress lines instead of the live display."),
    ):
        """Run coordinator, env server(s), memory, learner and actor(s) locally until a limit or Ctrl-C."""
        import asyncio
        import json

        from rich.console import Console

        from atlasrl import log
        from atlasrl.config import ConfigError, load_config

        overrides = list(set_)
        for key, value in (("actor.env_id", env), ("run.duration_s", duration), ("run.max_env_steps", max_steps),
                           ("run.run_dir", run_dir)):
            if value is not None:
                overrides.append(f"{key}={value}")
        if no_display:
            overrides.append("run.display=false")
        try:
            cfg = load_config(config, overrides, preset=preset)
        except ConfigError as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(2) from None
        log.setup()
        from atlasrl.up.run import up as run_up

        console = Console()
        summary = asyncio.run(run_up(cfg, console=console))
        console.print(summary_text(summary))
        typer.echo(json.dumps({k: summary.get(k) for k in ("run_dir", "stop_reason", "counters", "policy_version", "error")}
                              | {"eval_before": (summary.get("eval_before") or {}).get("success_rate"),
                                 "eval_after": (summary.get("eval_after") or {}).get("success_rate")}
                              | ({"critic": summary["critic"]} if summary.get("critic") else {})))
        if summary.get("error"):
            raise typer.Exit(1)


def summary_text(s: dict) -> str:
    from atlasrl.actors.eval import causes_text

    def rate(key):
        r = s.get(key) or {}
        if "success_rate" not in r:
            return "not run"
        fails = causes_text(r.get("causes") or {}, skip=("success",))
        return (f"{r['success_rate']:.2f} [{r.get('ci_low', 0):.2f}, {r.get('ci_high', 1):.2f}] over {r.get('episodes', '?')} episodes"
                + (f" (failed: {fails})" if fails else ""))
    c = s.get("counters") or {}
    lines = [f"run directory: {s['run_dir']}",
             f"stopped: {s.get('stop_reason', s.get('error', '?'))} after {s.get('wall_s', 0):.0f}s",
             f"env steps {c.get('actor.env_steps', 0):,}, episodes {c.get('actor.episodes', 0):,}, policy version {s.get('policy_version', '-')}",
             f"held-out eval before training (initial random-weights policy): {rate('eval_before')}",
             f"held-out eval after training:                                 {rate('eval_after')}"]
    if s.get("critic"):
        from atlasrl.actors.critic_reward import summary_line

        lines.append(summary_line(s["critic"]))
    a = s.get("accounting")
    if a:
        reasons = ", ".join(f"{k} {v:,}" for k, v in a["outcomes"].items() if ":" in k)
        lines.append(f"episodes: {a['generated']:,} generated = {a['trained']:,} trained + {a['refused']:,} refused + "
                     f"{a['lost']:,} lost + {a['waiting']:,} waiting + {a['unsent']:,} unsent"
                     + (f" ({reasons})" if reasons else "")
                     + ("" if a["balanced"] else f"; NOT balanced, violations {a['violations']}"))
    restarts = {k: v for k, v in (s.get("restarts") or {}).items() if v}
    if restarts:
        lines.append(f"restarts: {restarts}")
    return "\n".join(lines)
