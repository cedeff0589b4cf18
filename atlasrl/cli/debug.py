"""`atlasrl debug ...`: gRPC client scripts for poking a live service.

Each module in ``DEBUG_MODULES`` has ``register(debug_app)``.
"""
from __future__ import annotations

import importlib

import typer

DEBUG_MODULES = [
    "atlasrl.cli.debug_env",
    "atlasrl.cli.debug_memory",
    "atlasrl.cli.debug_critic",
]

debug_app = typer.Typer(help="gRPC client scripts to poke a live service.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    for name in DEBUG_MODULES:
        importlib.import_module(name).register(debug_app)
    app.add_typer(debug_app, name="debug")
