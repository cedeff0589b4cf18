"""Start one role's CLI in a child process: ``python -m atlasrl.up.launch <role> [flags]``.

Equivalent to ``atlasrl <role> [flags]`` but loads only that role's CLI module, so
a child never depends on the other roles' CLI modules importing cleanly.
"""
from __future__ import annotations

import importlib
import sys

import typer


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        raise SystemExit("usage: python -m atlasrl.up.launch <role> [flags]")
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def _group() -> None:  # keeps typer in sub-command mode with a single command
        pass

    importlib.import_module(f"atlasrl.cli.{argv[0]}").register(app)
    app(argv, prog_name="atlasrl")


if __name__ == "__main__":
    main()
