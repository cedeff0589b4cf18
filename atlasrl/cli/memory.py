"""`atlasrl memory`: the visual skill memory role (atlases, exemplars, skills, shaping).

Its flags are derived from ``MemoryConfig`` (atlasrl/memory/config.py); nested settings are ``--set
atlas.blend_rate=0.3`` and the like, with the server's address and the shaping discount as shortcuts.
"""
from __future__ import annotations

import typer

from atlasrl.cli.common import RoleOptions, role_options
from atlasrl.cli.from_model import SERVER_SHORTCUTS, config_options
from atlasrl.memory.config import MemoryConfig


def register(app: typer.Typer) -> None:
    @app.command("memory")
    @role_options(print_port=True)
    @config_options(MemoryConfig, extra={**SERVER_SHORTCUTS, "gamma": ("shaping.gamma", ("--gamma",)),
                                         "blend_rate": ("atlas.blend_rate", ("--blend-rate",))})
    def memory(*, cfg: MemoryConfig, opts: RoleOptions):
        """Run the skill memory role (Reset needs an admin token when tokens are on)."""
        from atlasrl.memory.server import main_sync

        opts.apply("memory", host=cfg.server.host)

        def ready(server) -> None:
            opts.announce_port(server.rpc.port)

        main_sync(cfg, on_ready=ready)
