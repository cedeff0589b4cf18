"""`atlasrl config show|presets`: print the resolved run config (preset < file < --set overrides)."""
from __future__ import annotations

from pathlib import Path

import typer

from atlasrl.config.loader import DEFAULT_PRESET

config_app = typer.Typer(help="Inspect the typed run config.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


@config_app.command("show")
def show(
    config: Path = typer.Option(None, "--config", "-c", help="Run config file (.toml, .yaml or .json)."),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", "-p", help="Preset the config starts from (as `atlasrl up "
                               "--preset`); 'none' prints the role configs' own defaults, which each role started alone "
                               "uses."),
    set_: list[str] = typer.Option([], "--set", help="Override, e.g. --set actor.num_envs=8 (repeatable)."),
    env: str = typer.Option(None, help="Shortcut for --set actor.env_id=ENV."),
    role: str = typer.Option(None, help="Print only this role's section (what `atlasrl <role> --print-config` shows "
                             "for the same settings)."),
    schema: bool = typer.Option(False, help="Print the JSON schema (every key, its bounds and its docstring) instead."),
):
    """Print the resolved config as YAML; exits 2 naming the key when a value is invalid."""
    import json

    from atlasrl.config import ConfigError, RunConfig, dump_config, load_config
    from atlasrl.config.schema import ROLE_MODELS

    if schema:
        typer.echo(json.dumps(RunConfig.model_json_schema(), indent=2))
        return
    overrides = list(set_) + ([f"actor.env_id={env}"] if env else [])
    try:
        cfg = load_config(config, overrides, preset=preset)
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    if role is not None:
        if role not in ROLE_MODELS:
            typer.echo(f"unknown role {role!r}: one of {', '.join(ROLE_MODELS)}", err=True)
            raise typer.Exit(2)
        typer.echo(dump_config(getattr(cfg, role)), nl=False)
        return
    typer.echo(f"# preset: {preset}\n" + dump_config(cfg), nl=False)


@config_app.command("presets")
def list_presets():
    """List the presets shipped with atlasrl, with their first comment line."""
    from atlasrl.config.loader import PRESETS_DIR, presets

    for name in presets():
        first = (PRESETS_DIR / f"{name}.yaml").read_text().splitlines()[0].lstrip("# ")
        typer.echo(f"{name}: {first.split(':', 1)[-1].strip()}")
