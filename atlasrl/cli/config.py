"""`atlasrl config show`: print the resolved run config (defaults < file < --set overrides)."""
from __future__ import annotations

from pathlib import Path

import typer

config_app = typer.Typer(help="Inspect the typed run config.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


@config_app.command("show")
def show(
    config: Path = typer.Option(None, "--config", "-c", help="Run config file (.toml or .yaml)."),
    set_: list[str] = typer.Option([], "--set", help="Override, e.g. --set actor.num_envs=8 (repeatable)."),
    env: str = typer.Option(None, help="Shortcut for --set envserver.env=ENV."),
    schema: bool = typer.Option(False, help="Print the JSON schema (every key, its bounds and its docstring) instead."),
):
    """Print the resolved config as YAML; exits 2 naming the key when a value is invalid."""
    import json

    from atlasrl.config import ConfigError, RunConfig, dump_config, load_config

    if schema:
        typer.echo(json.dumps(RunConfig.model_json_schema(), indent=2))
        return
    overrides = list(set_) + ([f"envserver.env={env}"] if env else [])
    try:
        cfg = load_config(config, overrides)
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    typer.echo(dump_config(cfg), nl=False)
