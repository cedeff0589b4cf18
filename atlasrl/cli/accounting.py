"""`atlasrl accounting RUN_DIR`: what became of every episode of a run (trained, refused, lost, ...)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("accounting")
    def accounting(
        run_dir: Optional[Path] = typer.Argument(None, help="An `atlasrl up` run directory (its spool/ and checkpoints/)."),
        spool: list[Path] = typer.Option([], help="Actor spool files (<spool_dir>/<actor_id>.sqlite), instead of a run dir."),
        ledger: Optional[Path] = typer.Option(None, help="The learner's ledger (<ckpt_dir>/ledger.sqlite), instead of a run dir."),
        json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    ):
        """Reconcile the actors' spools with the learner's ledger: generated = trained + refused + lost + waiting + unsent."""
        import json

        from atlasrl.up.accounting import reconcile, run_files

        if run_dir is not None:
            spools, found = run_files(run_dir)
            spool, ledger = spool or spools, ledger or found
        if not spool:
            raise typer.BadParameter("no actor spool files: pass RUN_DIR or --spool FILE (actors need --spool-dir)")
        for p in [*spool, *([ledger] if ledger else [])]:
            if not p.is_file():
                raise typer.BadParameter(f"{p} does not exist")
        acc = reconcile(spool, ledger)
        typer.echo(json.dumps(acc.as_dict()) if json_out else acc.table())
        if not acc.balanced:
            raise typer.Exit(1)
