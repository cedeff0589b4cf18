"""`atlasrl certs init DIR`: a development CA, server/client certificates and role tokens for a secure multi-host run."""
from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    certs = typer.Typer(help="Development certificates and tokens (TLS/mTLS + role tokens).", no_args_is_help=True)

    @certs.command("init")
    def init(
        out: Path = typer.Argument(..., help="Directory to write ca.pem, server.pem, client.pem, keys and tokens/ into."),
        hosts: str = typer.Option("localhost", help="Comma-separated DNS names the servers are reached by."),
        ips: str = typer.Option("127.0.0.1", help="Comma-separated IP addresses the servers are reached by."),
        days: int = typer.Option(365, min=1, help="Validity of the certificates."),
    ):
        """Create a dev CA plus server and client certificates and one token file per role."""
        import ipaddress

        from atlasrl.rpc.devcerts import init_dev_pki

        host_list = [h.strip() for h in hosts.split(",") if h.strip()]
        ip_list = [i.strip() for i in ips.split(",") if i.strip()]
        for ip in ip_list:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise typer.BadParameter(f"{ip!r} is not an IP address", param_hint="--ips") from None
        if not host_list and not ip_list:
            raise typer.BadParameter("give at least one of --hosts/--ips")
        try:
            paths = init_dev_pki(out, host_list, ip_list, days)
        except RuntimeError as e:   # the 'certs' extra is missing
            typer.echo(str(e), err=True)
            raise typer.Exit(1) from None
        typer.echo(f"wrote {len(paths)} files to {out} (SANs: {', '.join(host_list + ip_list)})")
        typer.echo("each host: ca.pem server.pem server-key.pem + tokens/<its role>.tokens; keep ca-key.pem offline")

    app.add_typer(certs, name="certs")
