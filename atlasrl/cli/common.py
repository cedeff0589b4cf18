"""Security flags shared by every role CLI, and their translation into the process security default.

    def envserver(..., tls_cert: Path = TLS_CERT, tls_key: Path = TLS_KEY, tls_ca: Path = TLS_CA,
                  mtls: bool = MTLS, token_file: Path = TOKEN_FILE, insecure: bool = INSECURE):
        apply_security("envserver", tls_cert, tls_key, tls_ca, mtls, token_file, insecure)

Tokens are only ever read from a file (--token-file, $ATLASRL_TOKEN_FILE) or
$ATLASRL_TOKENS, never from an argument: arguments show in `ps`.
"""
from __future__ import annotations

from pathlib import Path

import typer

TLS_CERT = typer.Option(None, "--tls-cert", envvar="ATLASRL_TLS_CERT", help="PEM certificate (server cert; client cert under mTLS).")
TLS_KEY = typer.Option(None, "--tls-key", envvar="ATLASRL_TLS_KEY", help="PEM private key of --tls-cert.")
TLS_CA = typer.Option(None, "--tls-ca", envvar="ATLASRL_TLS_CA", help="PEM CA that peers are verified against (turns TLS on for clients).")
MTLS = typer.Option(False, "--mtls", envvar="ATLASRL_MTLS", help="Servers require client certificates signed by --tls-ca.")
TOKEN_FILE = typer.Option(None, "--token-file", envvar="ATLASRL_TOKEN_FILE",
                          help="Token file (role:token / role:sha256:HEX lines); or set $ATLASRL_TOKENS.")
INSECURE = typer.Option(False, "--insecure", help="Allow a non-loopback bind without TLS and tokens (loud warning).")


def apply_security(role: str, tls_cert: Path | None, tls_key: Path | None, tls_ca: Path | None, mtls: bool,
                   token_file: Path | None, insecure: bool, host: str | None = None):
    """Validate the flags and make them this process's default for every server and channel.

    With ``host`` (the gRPC bind address) an unsafe bind is refused here, as a clean CLI error.
    """
    from atlasrl.rpc.config import SecurityConfig
    from atlasrl.rpc.security import SecurityError, check_bind, load_tokens, server_credentials, set_default_security

    sec = SecurityConfig(tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca, mtls=mtls, token_file=token_file,
                         client_role=role, insecure=insecure)
    try:
        creds = server_credentials(sec)
        tokens = load_tokens(sec)
        if host is not None:
            check_bind(host, sec, tls=creds is not None, tokens=bool(tokens))
        if tokens.plain and role not in tokens.plain:
            sec = sec.model_copy(update={"client_role": None if len(tokens.plain) == 1 else role})
    except SecurityError as e:
        raise typer.BadParameter(str(e)) from None
    set_default_security(sec)
    # Child processes (torchrun ranks, `up` roles) inherit the settings; paths only, never token contents.
    import os

    for name, value in (("ATLASRL_TLS_CERT", tls_cert), ("ATLASRL_TLS_KEY", tls_key), ("ATLASRL_TLS_CA", tls_ca),
                        ("ATLASRL_TOKEN_FILE", token_file)):
        if value is not None:
            os.environ[name] = str(Path(value).resolve())
    if mtls:
        os.environ["ATLASRL_MTLS"] = "1"
    return sec
