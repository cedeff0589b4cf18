"""`atlasrl envserver`: host many envs behind EnvService (and dm_env_rpc) on one port."""
from __future__ import annotations

import typer

from atlasrl.cli.common import RoleOptions, role_options


def register(app: typer.Typer) -> None:
    @app.command("envserver")
    @role_options(print_port=True, sessions=True)
    def envserver(
        env: str = typer.Option("", help="Comma-separated env ids or id prefixes that may be opened, e.g. 'sokoban,frozenlake,maniskill' (empty: all registered)."),
        host: str = typer.Option("127.0.0.1", help="gRPC bind address."),
        port: int = typer.Option(50051, help="gRPC port (0 = any free port)."),
        max_envs: int = typer.Option(512, help="Live env instances allowed across all streams (Open beyond: RESOURCE_EXHAUSTED)."),
        workers: int = typer.Option(None, help="Worker processes stepping envs (0 = in this process on threads). Default: CPU cores - 1, or one per --devices entry."),
        devices: str = typer.Option("", help="Comma-separated GPU ids; worker i gets CUDA_VISIBLE_DEVICES set to entry i mod n (ManiSkill renders on it)."),
        metrics_port: int = typer.Option(None, help="Prometheus /metrics port (omit to disable)."),
        idle_timeout: float = typer.Option(None, help="End a stream (and free its envs) after this many seconds without a request."),
        grace: float = typer.Option(5.0, help="On SIGTERM, seconds in-flight requests get to finish."),
        coordinator: str = typer.Option(None, help="Coordinator address (host:port) to register with."),
        openenv_port: int = typer.Option(None, help="Also serve every env over OpenEnv (HTTP/WebSocket, openenv-core; needs the 'openenv' extra) on this port of --host (0 = any free port)."),
        openenv_env: str = typer.Option(None, help="Env id an OpenEnv reset() without env_id opens (default: the first --env entry)."),
        *,
        opts: RoleOptions,
    ):
        """Run the env server role."""
        import asyncio

        from pydantic import ValidationError

        from atlasrl.envserver.config import EnvServerConfig, default_workers

        opts.apply("envserver", host=host)
        device_list = [d for d in devices.split(",") if d.strip()]
        if workers is None:
            workers = len(device_list) if device_list else default_workers()
        try:
            cfg = EnvServerConfig(envs=env, host=host, port=port, max_envs=max_envs, workers=workers, devices=device_list,
                                  metrics_port=metrics_port, idle_timeout_s=idle_timeout, grace_s=grace, coordinator=coordinator,
                                  openenv_port=openenv_port, openenv_env=openenv_env, **opts.session_limits())
        except ValidationError as e:
            raise typer.BadParameter(str(e)) from None
        if openenv_port is not None:
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
            typer.echo(f"envserver on {server.address} ({cfg.workers} workers, max {cfg.max_envs} envs"
                       f"{', metrics :' + str(server.metrics_port) if server.metrics_port else ''})", err=True)
            if server.openenv is not None:
                typer.echo(f"openenv on {server.openenv.url} (default env {server.openenv.default_env})", err=True)

        asyncio.run(serve(cfg, on_ready=ready))
