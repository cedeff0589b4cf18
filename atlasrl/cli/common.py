"""Flags every role CLI shares (logging, TLS/mTLS/tokens, --print-port) and what they set up.

    @app.command("envserver")
    @role_options(print_port=True)
    @config_options(EnvServerConfig)            # the role's own settings: atlasrl/cli/from_model.py
    def envserver(*, cfg: EnvServerConfig, opts: RoleOptions):
        opts.apply("envserver", host=cfg.host)  # log level + process security default; refuses unsafe binds
        opts.announce_port(server.port)         # 'PORT <n>' under --print-port, once serving

These are process settings (transport security, logging), not role settings: they are not in the role's
config model, and TLS paths may also come from ATLASRL_* variables.

``role_options`` appends the flags to the command's own (same names and help in every role) and
hands them over as one ``RoleOptions``. Tokens are only ever read from a file (--token-file,
$ATLASRL_TOKEN_FILE) or $ATLASRL_TOKENS, never from an argument: arguments show in `ps`.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

import typer

LOG_LEVEL = typer.Option(None, help="Log level (default: ATLASRL_LOG_LEVEL or WARNING).")
PRINT_PORT = typer.Option(False, help="Print 'PORT <n>' on stdout once serving (scripts, tests).")
TLS_CERT = typer.Option(None, "--tls-cert", envvar="ATLASRL_TLS_CERT", help="PEM certificate (server cert; client cert under mTLS).")
TLS_KEY = typer.Option(None, "--tls-key", envvar="ATLASRL_TLS_KEY", help="PEM private key of --tls-cert.")
TLS_CA = typer.Option(None, "--tls-ca", envvar="ATLASRL_TLS_CA", help="PEM CA that peers are verified against (turns TLS on for clients).")
MTLS = typer.Option(False, "--mtls", envvar="ATLASRL_MTLS", help="Servers require client certificates signed by --tls-ca.")
TOKEN_FILE = typer.Option(None, "--token-file", envvar="ATLASRL_TOKEN_FILE",
                          help="Token file (role:token / role:sha256:HEX lines); or set $ATLASRL_TOKENS.")
INSECURE = typer.Option(False, "--insecure", help="Allow a non-loopback bind without TLS and tokens (loud warning).")

# (annotation, option) per flag, in the order they appear in --help, by group.
_LOGGING = {"log_level": (Optional[str], LOG_LEVEL)}
_PRINT_PORT = {"print_port": (bool, PRINT_PORT)}
_SECURITY = {"tls_cert": (Optional[Path], TLS_CERT), "tls_key": (Optional[Path], TLS_KEY), "tls_ca": (Optional[Path], TLS_CA),
             "mtls": (bool, MTLS), "token_file": (Optional[Path], TOKEN_FILE), "insecure": (bool, INSECURE)}


@dataclass(frozen=True)
class RoleOptions:
    """The shared flags of one role command (a flag the role does not offer keeps its default)."""

    log_level: str | None = None
    print_port: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    mtls: bool = False
    token_file: Path | None = None
    insecure: bool = False

    def apply(self, role: str, host: str | None = None):
        """Set the log level and make the security flags this process's default (see ``apply_security``)."""
        from atlasrl import log

        log.setup(self.log_level)
        return apply_security(role, self.tls_cert, self.tls_key, self.tls_ca, self.mtls, self.token_file, self.insecure,
                              host=host)

    def announce_port(self, port: int) -> None:
        if self.print_port:
            print(f"PORT {port}", flush=True)


def role_options(*, log_level: bool = True, print_port: bool = False):
    """Decorator for a Typer command with an ``opts: RoleOptions`` parameter: appends the shared flags
    (security always; logging and --print-port as asked) and passes them in as ``opts``."""
    flags = {**(_PRINT_PORT if print_port else {}), **(_LOGGING if log_level else {}), **_SECURITY}
    assert set(flags) <= {f.name for f in fields(RoleOptions)}

    def wrap(fn):
        sig = inspect.signature(fn)
        own = [p for name, p in sig.parameters.items() if name != "opts"]
        shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
                  for name, (annotation, option) in flags.items()]

        @functools.wraps(fn)
        def command(*args, **kwargs):
            return fn(*args, opts=RoleOptions(**{name: kwargs.pop(name) for name in flags}), **kwargs)

        # Typer reads the parameters from the signature and their types from __annotations__.
        command.__signature__ = sig.replace(parameters=own + shared)
        command.__annotations__ = {k: v for k, v in fn.__annotations__.items() if k != "opts"} | {
            name: annotation for name, (annotation, _) in flags.items()}
        return command

    return wrap


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
