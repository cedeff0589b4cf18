"""`python -m atlasrl.memory ...`: the memory role alone (same options as `atlasrl memory`)."""
import typer

from atlasrl.cli.memory import register

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
register(app)

if __name__ == "__main__":
    app()
