"""`atlasrl envserver`: host many envs behind EnvService (and dm_env_rpc) on one port.

Its flags are derived from ``EnvServerConfig`` (atlasrl/envserver/config.py), the one definition of its settings.
"""
from __future__ import annotations

import typer

from atlasrl.cli.common import RoleOptions, role_options
from atlasrl.cli.from_model import config_options
from atlasrl.envserver.config import EnvServerConfig


def register(app: typer.Typer) -> None:
    @app.command("envserver")
    @role_options(print_port=True)
    @config_options(EnvServerConfig, names={"envs": ("--envs", "--env"), "idle_timeout_s": ("--idle-timeout-s", "--idle-timeout"),
                                            "grace_s": ("--grace-s", "--grace")})
    def envserver(*, cfg: EnvServerConfig, opts: RoleOptions):
        """Run the env server role."""
        import asyncio

        opts.apply("envserver", host=cfg.host)
        if cfg.openenv_port is not None:
            try:
                import openenv.core.env_server  # noqa: F401  (the 'openenv' extra; imported only for this flag)
            except ImportError as e:
                raise typer.BadParameter(f"needs openenv-core ({e}): pip install 'atlasrl[openenv]'", param_hint="--openenv-port") from None
        from atlasrl.envserver.server import check_env_names, serve

        try:
            check_env_names(cfg)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--env") from None

        def ready(server) -> None:
            opts.announce_port(server.rpc.port)
            typer.echo(f"envserver on {server.address} ({cfg.worker_count()} workers, max {cfg.max_envs} envs"
                       f"{', metrics :' + str(server.metrics_port) if server.metrics_port else ''})", err=True)
            if server.openenv is not None:
                typer.echo(f"openenv on {server.openenv.url} (default env {server.openenv.default_env})", err=True)

        asyncio.run(serve(cfg, on_ready=ready))
