"""`atlasrl coordinator`: membership, leases, assignments, run state (SQLite-backed).

Its flags are derived from ``CoordinatorConfig`` (atlasrl/coordinator/config.py); the server's settings are
``server.*`` (``--host``/``--port``/``--metrics-port`` and the session limits as shortcuts).
"""
from __future__ import annotations

import typer

from atlasrl.cli.common import RoleOptions, role_options
from atlasrl.cli.from_model import SERVER_SHORTCUTS, config_options
from atlasrl.coordinator.config import CoordinatorConfig


def register(app: typer.Typer) -> None:
    @app.command("coordinator")
    @role_options()
    @config_options(CoordinatorConfig, extra=SERVER_SHORTCUTS)
    def coordinator(*, cfg: CoordinatorConfig, opts: RoleOptions):
        """Run the coordinator role."""
        from atlasrl.coordinator.server import main

        opts.apply("coordinator", host=cfg.server.host)
        main(cfg)
