"""`atlasrl coordinator`: membership, leases, assignments, run state (SQLite-backed)."""
from __future__ import annotations

from pathlib import Path

import typer

from atlasrl.cli.common import INSECURE, MTLS, TLS_CA, TLS_CERT, TLS_KEY, TOKEN_FILE, apply_security


def register(app: typer.Typer) -> None:
    @app.command("coordinator")
    def coordinator(
        host: str = typer.Option("127.0.0.1", help="gRPC bind address."),
        port: int = typer.Option(50050, help="gRPC port (0 = any free port)."),
        metrics_port: int = typer.Option(None, help="Prometheus /metrics port (omit to disable)."),
        state_dir: Path = typer.Option(Path("coordinator-state"), help="Directory of the SQLite state; reused on restart."),
        lease_ttl_s: float = typer.Option(10.0, help="Members silent this long are declared dead."),
        max_staleness: int = typer.Option(4, help="Actors lagging more policy versions than this wait."),
        history_interval_s: float = typer.Option(2.0, help="Sampling period of the progress history."),
        log_level: str = typer.Option(None, help="Log level (default: ATLASRL_LOG_LEVEL or WARNING)."),
        tls_cert: Path = TLS_CERT,
        tls_key: Path = TLS_KEY,
        tls_ca: Path = TLS_CA,
        mtls: bool = MTLS,
        token_file: Path = TOKEN_FILE,
        insecure: bool = INSECURE,
    ):
        """Run the coordinator role."""
        from pydantic import ValidationError

        from atlasrl import log
        from atlasrl.coordinator.config import CoordinatorConfig
        from atlasrl.rpc import ServerConfig

        log.setup(log_level)
        apply_security("coordinator", tls_cert, tls_key, tls_ca, mtls, token_file, insecure, host=host)
        try:
            cfg = CoordinatorConfig(server=ServerConfig(host=host, port=port, metrics_port=metrics_port), state_dir=state_dir,
                                    lease_ttl_s=lease_ttl_s, max_staleness=max_staleness, history_interval_s=history_interval_s)
        except ValidationError as e:
            raise typer.BadParameter(str(e)) from None
        from atlasrl.coordinator.server import main

        main(cfg)
