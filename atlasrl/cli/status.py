"""`atlasrl status --coordinator ADDR`: roles, health, policy versions, throughput and errors of a live run."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status(
        coordinator: str = typer.Option("127.0.0.1:50050", help="Coordinator address host:port."),
        all_members: bool = typer.Option(False, "--all", help="Also list members that died or left."),
        watch: float = typer.Option(0.0, help="Refresh every N seconds (0 = print once)."),
        json_out: bool = typer.Option(False, "--json", help="Print the raw ClusterStatus as JSON."),
        pause: bool = typer.Option(False, help="Pause the run, then print status."),
        resume: bool = typer.Option(False, help="Resume a paused run, then print status."),
        stop: bool = typer.Option(False, help="Ask every role to stop, then print status."),
    ):
        """Show the state of a running atlasrl run."""
        import asyncio

        import grpc

        from atlasrl.clients.coordinator import CoordinatorClient
        from atlasrl.up.status_table import render_status

        client = CoordinatorClient(coordinator)

        async def once():
            for flag, state in ((pause, "paused"), (resume, "running"), (stop, "stopping")):
                if flag:
                    await client.set_run_state(state, reason="atlasrl status")
            return await client.status(include_dead=all_members, history_points=30)

        try:
            if json_out:
                from google.protobuf.json_format import MessageToJson

                typer.echo(MessageToJson(asyncio.run(once())))
                return
            from rich.console import Console
            from rich.live import Live

            console = Console()
            if not watch:
                console.print(render_status(asyncio.run(once())))
                return
            with Live(console=console, auto_refresh=False) as live:
                while True:
                    live.update(render_status(asyncio.run(once())), refresh=True)
                    asyncio.run(asyncio.sleep(watch))
        except grpc.RpcError as e:
            typer.echo(f"coordinator {coordinator}: {e.code().name}: {e.details()}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            pass
