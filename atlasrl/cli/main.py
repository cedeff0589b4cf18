"""`atlasrl` entry point: one sub-command per role plus tools.

Each module in ``COMMAND_MODULES`` has ``register(app)``; modules import their
heavy dependencies (torch, grpc servers) inside the command functions, so
``atlasrl --help`` stays instant.
"""
from __future__ import annotations

import importlib

import typer

COMMAND_MODULES = [
    "atlasrl.cli.envserver",
    "atlasrl.cli.debug",
    "atlasrl.cli.coordinator",
    "atlasrl.cli.status",
    "atlasrl.cli.accounting",
    "atlasrl.cli.config",
    "atlasrl.cli.up",
    "atlasrl.cli.memory",
    "atlasrl.cli.learner",
    "atlasrl.cli.actor",
    "atlasrl.cli.certs",
    "atlasrl.cli.model",
    "atlasrl.cli.critic",
]

app = typer.Typer(
    name="atlasrl",
    help="Distributed actor-learner RL for vision-language agents over gRPC.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def build() -> typer.Typer:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
    return app


def main() -> None:
    build()()


if __name__ == "__main__":
    main()
