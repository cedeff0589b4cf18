"""`atlasrl coordinator`: membership, leases, assignments, run state (SQLite-backed)."""
from __future__ import annotations

from pathlib import Path

import typer

from atlasrl.cli.common import RoleOptions, role_options


def register(app: typer.Typer) -> None:
    @app.command("coordinator")
    @role_options(sessions=True)
    def coordinator(
        host: str = typer.Option("127.0.0.1", help="gRPC bind address."),
        port: int = typer.Option(50050, help="gRPC port (0 = any free port)."),
        metrics_port: int = typer.Option(None, help="Prometheus /metrics port (omit to disable)."),
        state_dir: Path = typer.Option(Path("coordinator-state"), help="Directory of the SQLite state; reused on restart."),
        lease_ttl_s: float = typer.Option(10.0, help="Members silent this long are declared dead."),
        max_staleness: int = typer.Option(4, help="Actors lagging more policy versions than this wait."),
        history_interval_s: float = typer.Option(2.0, help="Sampling period of the progress history."),
        reopen_stopped: bool = typer.Option(False, "--reopen-stopped",
                                            help="Set a run its last launch left STOPPING back to RUNNING (a new launch on the same state)."),
        *,
        opts: RoleOptions,
    ):
        """Run the coordinator role."""
        from pydantic import ValidationError

        from atlasrl.coordinator.config import CoordinatorConfig
        from atlasrl.rpc import ServerConfig

        opts.apply("coordinator", host=host)
        try:
            server = ServerConfig(host=host, port=port, metrics_port=metrics_port, **opts.session_limits())
            cfg = CoordinatorConfig(server=server, state_dir=state_dir,
                                    lease_ttl_s=lease_ttl_s, max_staleness=max_staleness, history_interval_s=history_interval_s,
                                    reopen_stopped=reopen_stopped)
        except ValidationError as e:
            raise typer.BadParameter(str(e)) from None
        from atlasrl.coordinator.server import main

        main(cfg)
