"""`atlasrl memory`: the visual skill memory role (atlases, exemplars, skills, shaping)."""
from __future__ import annotations

from pathlib import Path

import typer

from atlasrl.cli.common import INSECURE, MTLS, TLS_CA, TLS_CERT, TLS_KEY, TOKEN_FILE, apply_security


def register(app: typer.Typer) -> None:
    @app.command("memory")
    def memory(
        host: str = typer.Option("127.0.0.1", help="gRPC bind address."),
        port: int = typer.Option(50055, help="gRPC port (0 = any free port)."),
        metrics_port: int = typer.Option(None, help="Prometheus /metrics port (omit to disable)."),
        data_dir: Path = typer.Option(None, help="Snapshot directory; state is restored from it on start (omit: RAM only)."),
        snapshot_interval_s: float = typer.Option(60.0, help="Snapshot this often when something changed (and on shutdown)."),
        coordinator: str = typer.Option(None, help="Coordinator address (host:port) to register with."),
        blend_rate: float = typer.Option(0.5, help="EMA rate eta of the atlas maps per applied episode."),
        gamma: float = typer.Option(0.99, help="Default discount of the shaping term F = gamma*Phi(s') - Phi(s)."),
        print_port: bool = typer.Option(False, help="Print 'PORT <n>' on stdout once serving (scripts, tests)."),
        log_level: str = typer.Option(None, help="Log level (default: ATLASRL_LOG_LEVEL or WARNING)."),
        tls_cert: Path = TLS_CERT,
        tls_key: Path = TLS_KEY,
        tls_ca: Path = TLS_CA,
        mtls: bool = MTLS,
        token_file: Path = TOKEN_FILE,
        insecure: bool = INSECURE,
    ):
        """Run the skill memory role (Reset needs an admin token when tokens are on)."""
        from pydantic import ValidationError

        from atlasrl import log
        from atlasrl.memory.config import AtlasConfig, MemoryConfig, ShapingConfig
        from atlasrl.rpc import ServerConfig

        log.setup(log_level)
        apply_security("memory", tls_cert, tls_key, tls_ca, mtls, token_file, insecure)
        try:
            cfg = MemoryConfig(server=ServerConfig(host=host, port=port, metrics_port=metrics_port), data_dir=data_dir,
                               snapshot_interval_s=snapshot_interval_s, coordinator=coordinator,
                               atlas=AtlasConfig(blend_rate=blend_rate), shaping=ShapingConfig(gamma=gamma))
        except ValidationError as e:
            raise typer.BadParameter(str(e)) from None
        from atlasrl.memory.server import main_sync

        def ready(server) -> None:
            if print_port:
                print(f"PORT {server.rpc.port}", flush=True)

        main_sync(cfg, on_ready=ready)
