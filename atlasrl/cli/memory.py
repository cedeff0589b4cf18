"""`atlasrl memory`: the visual skill memory role (atlases, exemplars, skills, shaping)."""
from __future__ import annotations

from pathlib import Path

import typer

from atlasrl.cli.common import RoleOptions, role_options


def register(app: typer.Typer) -> None:
    @app.command("memory")
    @role_options(print_port=True, sessions=True)
    def memory(
        host: str = typer.Option("127.0.0.1", help="gRPC bind address."),
        port: int = typer.Option(50055, help="gRPC port (0 = any free port)."),
        metrics_port: int = typer.Option(None, help="Prometheus /metrics port (omit to disable)."),
        data_dir: Path = typer.Option(None, help="Snapshot directory; state is restored from it on start (omit: RAM only)."),
        snapshot_interval_s: float = typer.Option(60.0, help="Snapshot this often when something changed (and on shutdown)."),
        coordinator: str = typer.Option(None, help="Coordinator address (host:port) to register with."),
        blend_rate: float = typer.Option(0.5, help="EMA rate eta of the atlas maps per applied episode."),
        gamma: float = typer.Option(0.99, help="Default discount of the shaping term F = gamma*Phi(s') - Phi(s)."),
        *,
        opts: RoleOptions,
    ):
        """Run the skill memory role (Reset needs an admin token when tokens are on)."""
        from pydantic import ValidationError

        from atlasrl.memory.config import AtlasConfig, MemoryConfig, ShapingConfig
        from atlasrl.rpc import ServerConfig

        opts.apply("memory", host=host)
        try:
            server = ServerConfig(host=host, port=port, metrics_port=metrics_port, **opts.session_limits())
            cfg = MemoryConfig(server=server, data_dir=data_dir,
                               snapshot_interval_s=snapshot_interval_s, coordinator=coordinator,
                               atlas=AtlasConfig(blend_rate=blend_rate), shaping=ShapingConfig(gamma=gamma))
        except ValidationError as e:
            raise typer.BadParameter(str(e)) from None
        from atlasrl.memory.server import main_sync

        def ready(server) -> None:
            opts.announce_port(server.rpc.port)

        main_sync(cfg, on_ready=ready)
