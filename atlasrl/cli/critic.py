"""`atlasrl critic`: the progress critic role; `atlasrl critic record` and `atlasrl critic train` for its value model.

    atlasrl critic --port 50057                               # value backend, seeded random weights: no files needed
    atlasrl critic --backend value --model critic.pt          # a trained value critic
    atlasrl critic --backend hf --model /models/VLAC          # a local HF vision-language model, VLAC's prompt
    atlasrl critic --backend oracle                           # simulator state sent with each frame
    atlasrl critic record --env 127.0.0.1:50051 --env-id frozenlake --episodes 2000 --out fl.critic
    atlasrl critic train --data fl.critic --out critic.pt

Flags are derived from ``CriticConfig`` / ``CriticRecordConfig`` / ``CriticTrainConfig`` (atlasrl/critic/config.py).
"""
from __future__ import annotations

import typer

from atlasrl.cli.common import RoleOptions, role_options
from atlasrl.cli.from_model import SERVER_SHORTCUTS, config_options
from atlasrl.critic.config import CriticConfig, CriticRecordConfig, CriticTrainConfig

critic_app = typer.Typer(help="Progress critic (VLAC-style): decides training termination and reward.",
                         invoke_without_command=True)


@critic_app.callback()
@role_options(print_port=True)
@config_options(CriticConfig, extra=dict(SERVER_SHORTCUTS))
def critic(ctx: typer.Context, *, cfg: CriticConfig, opts: RoleOptions):
    """Run the critic role (CriticService)."""
    if ctx.invoked_subcommand is not None:
        return
    from atlasrl.critic.server import main_sync

    opts.apply("critic", host=cfg.server.host)

    def ready(server) -> None:
        opts.announce_port(server.rpc.port)
        typer.echo(f"critic on {server.address} (backend {server.backend.name}, "
                   f"{server.backend.model or 'no model file'}, {server.backend.device})", err=True)

    main_sync(cfg, on_ready=ready)


@critic_app.command("record")
@config_options(CriticRecordConfig)
def record(*, cfg: CriticRecordConfig):
    """Play episodes with random valid actions on an env server and record every frame with its success flag."""
    import asyncio

    from atlasrl.critic.record import record_episodes

    n, successes = asyncio.run(record_episodes(cfg))
    typer.echo(f"recorded {n} episodes ({successes} successful) to {cfg.out}")


@critic_app.command("train")
@config_options(CriticTrainConfig)
def train(*, cfg: CriticTrainConfig):
    """Train the value critic on recorded episodes' env success labels; prints held-out figures as JSON."""
    import json

    from atlasrl.critic.train import train_value_critic

    if not cfg.data:
        raise typer.BadParameter("at least one recorded episode file is needed", param_hint="--data")
    report = train_value_critic(cfg)
    typer.echo(json.dumps(report))


def register(app: typer.Typer) -> None:
    app.add_typer(critic_app, name="critic")
