"""Role CLIs derived from the role's config model: one flag per field, ``--config FILE``, ``--set key=value``.

    @app.command("envserver")
    @config_options(EnvServerConfig, names={"envs": ("--envs", "--env")})
    def envserver(*, cfg: EnvServerConfig, opts: RoleOptions): ...

Every top-level scalar field of the model becomes ``--field-name`` (bools ``--x/--no-x``, dicts repeatable
``--field key=value``, lists comma-separated), its help is the field's docstring, and its default is *unset*:
a flag overrides the file only when given. Nested settings are reached with ``--set section.key=value`` or
with the few dotted shortcuts a role names in ``extra``. Precedence: model defaults < ``--config`` < ``--set`` <
flags. ``--print-config`` prints the resolved config as YAML and exits (what the role would run with).

Typer drives it (the signature is built from the model, like ``cli.common.role_options``): pydantic-settings'
CLI source and tyro were the alternatives, but both replace Typer's parser for the whole command, and the
security flags, ``--print-port`` and the learner's subcommands are Typer options shared by every role.
"""
from __future__ import annotations

import functools
import inspect
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import typer
from pydantic import BaseModel

CONFIG = typer.Option(None, "--config", "-c", help="Config file (.yaml, .toml or .json) of this role's settings "
                      "(docs/config.md); `atlasrl up` writes one per process into <run_dir>/config/.")
SET = typer.Option([], "--set", help="Override one setting, dotted for nested ones: --set lr=3e-4, "
                   "--set server.grace_s=10 (value parsed as YAML; repeatable; wins over --config).")
PRINT_CONFIG = typer.Option(False, "--print-config", help="Print the resolved config as YAML and exit.")

SERVER_SHORTCUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    name: (f"server.{name}", (f"--{name.replace('_', '-')}",))
    for name in ("host", "port", "metrics_port", "max_sessions_per_client", "session_idle_timeout_s")}
"""Flags of the roles whose config nests a ``server: ServerConfig`` (coordinator, memory)."""


@dataclass(frozen=True)
class _Flag:
    dotted: str          # key in the model, e.g. "lr" or "server.port"
    annotation: Any      # the Typer parameter type
    option: Any          # typer.Option(...)
    kind: str            # "value" | "dict"


def _unwrap_optional(ann: Any) -> Any:
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return ann


def flag_type(ann: Any) -> tuple[str, Any, str] | None:
    """(kind, Typer annotation, help suffix) of a field's annotation; None = no flag (nested models, tuples...)."""
    ann = _unwrap_optional(ann)
    origin = typing.get_origin(ann)
    if ann is bool:
        return "bool", Optional[bool], ""
    if ann in (int, float, str):
        return "value", Optional[ann], ""
    if ann is Path:
        return "value", Optional[Path], ""
    if origin is Literal:
        return "value", Optional[str], " One of: " + ", ".join(str(a) for a in typing.get_args(ann)) + "."
    if origin is list and typing.get_args(ann) in ((str,),):
        return "value", Optional[str], " Comma-separated."
    if origin is dict and typing.get_args(ann) == (str, str):
        return "dict", Optional[list[str]], " KEY=VALUE, repeatable; merged into the current table."
    return None


def model_flags(model: type[BaseModel], *, names: dict[str, tuple[str, ...]] | None = None,
                extra: dict[str, tuple[str, tuple[str, ...]]] | None = None,
                skip: tuple[str, ...] = ()) -> dict[str, _Flag]:
    """Parameter name -> flag for each top-level field (``names`` renames; ``extra``: dotted nested shortcuts)."""
    names = names or {}
    out: dict[str, _Flag] = {}
    targets: list[tuple[str, tuple[str, ...] | None]] = [(f, names.get(f)) for f in model.model_fields if f not in skip]
    targets += [(dotted, decls) for dotted, decls in (extra or {}).values()]
    for dotted in (d for d, _ in targets):
        if dotted.split(".")[0] not in model.model_fields:
            raise AssertionError(f"{model.__name__} has no field {dotted}")
    for dotted, decls in targets:
        field = _field(model, dotted)
        spec = flag_type(field.annotation)
        if spec is None:
            continue
        kind, annotation, suffix = spec
        leaf = dotted.split(".")[-1].replace("_", "-")
        if decls is None:
            decls = (f"--{leaf}/--no-{leaf}",) if kind == "bool" else (f"--{leaf}",)
        help_text = " ".join((field.description or "").split()) + suffix
        param = "cfg__" + dotted.replace(".", "__")
        out[param] = _Flag(dotted, annotation, typer.Option(None, *decls, help=help_text, show_default=False),
                           "dict" if kind == "dict" else "value")
    return out


def _field(model: type[BaseModel], dotted: str):
    keys = dotted.split(".")
    for k in keys[:-1]:
        model = _unwrap_optional(model.model_fields[k].annotation)
    return model.model_fields[keys[-1]]


def config_options(model: type[BaseModel], *, names: dict[str, tuple[str, ...]] | None = None,
                   extra: dict[str, tuple[str, tuple[str, ...]]] | None = None, skip: tuple[str, ...] = ()):
    """Decorator for a Typer command with a ``cfg`` keyword parameter: adds --config, --set, --print-config and
    one flag per field of ``model``, and passes the validated model as ``cfg`` (a clear error names a bad key)."""
    flags = model_flags(model, names=names, extra=extra, skip=skip)

    def wrap(fn):
        sig = inspect.signature(fn)
        own = [p for name, p in sig.parameters.items() if name != "cfg"]
        kw = inspect.Parameter.KEYWORD_ONLY
        added = [inspect.Parameter("config", kw, default=CONFIG, annotation=Optional[Path]),
                 inspect.Parameter("set_", kw, default=SET, annotation=list[str]),
                 inspect.Parameter("print_config", kw, default=PRINT_CONFIG, annotation=bool)]
        added += [inspect.Parameter(p, kw, default=f.option, annotation=f.annotation) for p, f in flags.items()]

        @functools.wraps(fn)
        def command(*args, **kwargs):
            from atlasrl.config.loader import ConfigError, dump_config, role_data, validate_role

            path, overrides, show = kwargs.pop("config"), kwargs.pop("set_"), kwargs.pop("print_config")
            given = {p: kwargs.pop(p) for p in flags}
            try:
                data = role_data(path, overrides)
                cfg = validate_role(model, data, flags=_flag_values(model, data, flags, given))
            except (ConfigError, ValueError) as e:
                raise typer.BadParameter(str(e)) from None
            if show:
                typer.echo(dump_config(cfg), nl=False)
                raise typer.Exit(0)
            return fn(*args, cfg=cfg, **kwargs)

        command.__signature__ = sig.replace(parameters=own + added)  # type: ignore[attr-defined]
        command.__annotations__ = {k: v for k, v in fn.__annotations__.items() if k != "cfg"} | {
            "config": Optional[Path], "set_": list[str], "print_config": bool} | {p: f.annotation for p, f in flags.items()}
        return command

    return wrap


def _flag_values(model: type[BaseModel], data: dict[str, Any], flags: dict[str, _Flag], given: dict[str, Any]) -> dict:
    """The flags given, as dotted key -> value; a dict flag's KEY=VALUE items merge into the table it updates
    (from ``data``, the --config file and --set, else the field's default), so `--env-config size=8` keeps the
    other env settings."""
    from atlasrl.config.loader import get_path

    out: dict[str, Any] = {}
    for param, value in given.items():
        if value is None:
            continue
        flag = flags[param]
        if flag.kind == "dict":
            current = get_path(data, flag.dotted.split("."))
            if current is None:
                current = _field(model, flag.dotted).get_default(call_default_factory=True) or {}
            value = {**current, **parse_kv(value)}
        out[flag.dotted] = value
    return out


def parse_kv(items: list[str]) -> dict[str, str]:
    """['k=v', 'a=b'] -> {'k': 'v', 'a': 'b'}."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out
