"""The inventory: hosts -> roles, each with its role config (YAML). See ../inventory.example.yaml.

Validated with pydantic at load time; errors name the key (``hosts.env-0.roles.envserver.count``). A role's
settings are fields of that role's config model (atlasrl/<role>/config.py, docs/config.md): ``config`` at the
top level applies to every process of a role, a host's ``roles.<role>.config`` overrides it there. Both are
checked against the role's model here, so a misspelt key fails before anything is deployed.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ROLES = ("coordinator", "envserver", "memory", "learner", "actor")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoleSpec(Strict):
    count: int = Field(1, ge=1, le=256)
    """Processes of this role on the host (ports port, port+1, ...)."""
    port: int = Field(..., ge=1, le=65535)
    """gRPC port of the first process."""
    metrics_port: int = Field(..., ge=1, le=65535)
    """/metrics port of the first process."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Settings of these processes: fields of the role's config (``num_envs: 32``, ``atlas: {blend_rate: 0.3}``)
    over the inventory's ``config.<role>``. The learner's ``nproc`` (GPUs on this host) is one of them."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment of these processes, e.g. ``GLOO_SOCKET_IFNAME``/``NCCL_SOCKET_IFNAME``: the interface a
    multi-node learner's collectives use when the hostname resolves to a loopback address."""
    devices: list[int] | None = None
    """GPU ids of the host (its ``gpus``) these processes use, split evenly over ``count`` processes: written into
    each process's ``devices`` setting where its role has one (learner, actor, envserver: the role sets its
    CUDA_VISIBLE_DEVICES), else set as CUDA_VISIBLE_DEVICES. The learner's ``nproc`` defaults to its share."""


class Host(Strict):
    ssh: str = "local"
    """ssh destination (``user@host``, an ~/.ssh/config alias) or ``local`` to run on this machine."""
    ssh_port: int = Field(22, ge=1, le=65535)
    """ssh port."""
    address: str = "127.0.0.1"
    """Address the other hosts use to reach this host's roles; roles bind to it."""
    remote_dir: str | None = None
    """Where the code (and the venv) lives on this host; default: the inventory's remote_dir."""
    venv: str | None = None
    """Existing virtual environment to use instead of creating <remote_dir>/.venv."""
    gpus: int = Field(0, ge=0, le=64)
    """GPUs on this host (ids 0..gpus-1): the roles' ``devices`` must be among them; ``up`` checks nvidia-smi."""
    roles: dict[Literal["coordinator", "envserver", "memory", "learner", "actor"], RoleSpec]
    """Roles on this host."""


class Inventory(Strict):
    name: str = Field("atlasrl", pattern=r"^[A-Za-z0-9_.-]+$")
    """Run name: unit names, rendezvous id and the coordinator state directory derive from it."""
    remote_dir: str = "/opt/atlasrl"
    """Default code + venv directory on every host."""
    python: str = "python3"
    """Python (3.11+) used to create the venv on hosts."""
    install_flags: list[str] = Field(default_factory=list)
    """Extra flags of scripts/install.sh (``--maniskill``)."""
    service_manager: Literal["auto", "systemd", "plain"] = "auto"
    """systemd units (Restart=on-failure), a plain restart loop, or auto: systemd where it runs."""
    rdzv_port: int = Field(29400, ge=1, le=65535)
    """torchrun rendezvous port on the first learner host (multi-node learner)."""
    model: str = ""
    """Model directory on the learner and actor hosts (their ``model`` setting)."""
    slurm: list[str] = Field(default_factory=list)
    """Extra ``#SBATCH`` options of `deploy.py slurm`'s batch script (``--partition=gpu``, ``--time=02:00:00``)."""
    ssh_config: str | None = None
    """ssh client config file for every ssh/scp call (``ssh -F FILE``): aliases, keys, jump hosts."""
    ssh_connect_timeout_s: int = Field(10, ge=1, le=300)
    """How long an unreachable host is waited for before deploy names it and stops."""
    config: dict[Literal["coordinator", "envserver", "memory", "learner", "actor"], dict[str, Any]] = Field(default_factory=dict)
    """Settings every process of a role gets (fields of its config model); a host's roles.<role>.config overrides."""
    hosts: dict[str, Host]
    """Hosts by name."""

    @model_validator(mode="after")
    def _check(self) -> Inventory:
        count = {r: sum(1 for h in self.hosts.values() if r in h.roles) for r in ROLES}
        if count["coordinator"] != 1 or self.hosts[self.coordinator_host].roles["coordinator"].count != 1:
            raise ValueError("exactly one coordinator process is needed (one host with roles.coordinator, count 1)")
        if count["memory"] > 1:
            raise ValueError("at most one memory host")
        remote = [n for n, h in self.hosts.items() if h.ssh != "local"]
        by_address: dict[str, str] = {}
        for name, h in self.hosts.items():
            if name in remote and len(self.hosts) > 1 and is_loopback(h.address):
                raise Bad(f"hosts.{name}.address", f"{h.address} is loopback: the other hosts cannot reach "
                                                        f"{name}'s roles there; give the address they reach it by")
            if name in remote and h.address in by_address:
                raise Bad(f"hosts.{name}.address", f"{h.address} is also hosts.{by_address[h.address]}.address: "
                                                        "it cannot be the address of both")
            by_address.setdefault(h.address, name)
            if "learner" in h.roles and h.roles["learner"].count != 1:
                raise Bad(f"hosts.{name}.roles.learner.count", "one learner launcher per host (config nproc: GPUs)")
            used: dict[int, str] = {}
            for role, spec in h.roles.items():
                check_role_config(role, self.role_config(name, role), f"hosts.{name}.roles.{role}.config")
                if spec.devices is None:
                    continue
                where = f"hosts.{name}.roles.{role}.devices"
                missing = [d for d in spec.devices if not 0 <= d < h.gpus]
                if missing:
                    raise Bad(where, f"GPU {missing} not on host {name}: it has "
                                          + (f"GPUs 0-{h.gpus - 1}" if h.gpus else "no GPUs (hosts." + name + ".gpus: 0)"))
                if not spec.devices or len(spec.devices) != len(set(spec.devices)) or len(spec.devices) % spec.count:
                    raise Bad(where, f"{spec.devices}: distinct GPU ids, the same number for each of the "
                                          f"{spec.count} processes")
                for d in spec.devices:
                    if d in used:
                        raise Bad(where, f"GPU {d} is also given to hosts.{name}.roles.{used[d]}")
                    used[d] = role
                share = len(spec.devices) // spec.count
                nproc = self.role_config(name, role).get("nproc")
                if role == "learner" and nproc is not None and int(nproc) != share:
                    raise Bad(where, f"{share} GPUs per learner but config nproc: {nproc} (one rank per GPU)")
            seen: dict[int, str] = {}
            for role, spec in h.roles.items():
                for key, base in (("port", spec.port), ("metrics_port", spec.metrics_port)):
                    for p in range(base, base + spec.count):
                        here = f"hosts.{name}.roles.{role}.{key}"
                        if p in seen:
                            raise Bad(here, f"port {p} is also used by {seen[p]} on host {name}")
                        seen[p] = here
            if "learner" in h.roles and count["learner"] > 1 and self.rdzv_port in seen:
                raise Bad("rdzv_port", f"{self.rdzv_port} is also {seen[self.rdzv_port]}")
        return self

    @property
    def coordinator_host(self) -> str:
        return next(n for n, h in self.hosts.items() if "coordinator" in h.roles)

    def role_config(self, host: str, role: str) -> dict[str, Any]:
        """The settings of ``role`` on ``host``: the inventory's config.<role>, then the host's (deep-merged)."""
        from atlasrl.config.loader import merge

        return merge(merge({}, copy.deepcopy(self.config.get(role, {}))), copy.deepcopy(self.hosts[host].roles[role].config))

    def host_dir(self, name: str) -> str:
        return self.hosts[name].remote_dir or self.remote_dir

    def python_of(self, name: str) -> str:
        venv = self.hosts[name].venv or f"{self.host_dir(name)}/.venv"
        return f"{venv}/bin/python"


class Bad(ValueError):
    """An inventory check that failed at ``key`` (dotted); load_inventory adds the key's line in the file."""

    def __init__(self, key: str, msg: str):
        super().__init__(f"{key}: {msg}")
        self.key, self.msg = key, msg


def is_loopback(address: str) -> bool:
    import ipaddress

    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def check_role_config(role: str, settings: dict[str, Any], where: str) -> None:
    """Validate settings against the role's config model; the error names the key under ``where``."""
    from atlasrl.config.loader import ConfigError
    from atlasrl.config.roles import role_config

    try:
        role_config(role, settings)
    except ConfigError as e:
        lines = [ln.strip() for ln in str(e).replace(f"  {role}.", f"  {where}.").splitlines()]
        first = next((ln for ln in lines if ln.startswith(where)), lines[-1])   # "<key>: <why>"
        key, _, why = first.partition(": ")
        raise Bad(key, why) if key.startswith(where) else Bad(where, first) from None


class InventoryError(ValueError):
    """The inventory is invalid; the message names the key."""


def load_inventory(path: Path | str) -> Inventory:
    """Read and validate; an error names the key and the line of the file it is on (``inventory.yaml:23``)."""
    try:
        text = Path(path).read_text()
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as e:
        raise InventoryError(f"cannot read inventory {path}: {e}") from None
    try:
        return Inventory.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            ctx = (err.get("ctx") or {}).get("error")
            if isinstance(ctx, Bad):   # a check of ours: it knows the key
                lines.append(f"  {path}:{line_of(text, ctx.key)}: {ctx.key}: {ctx.msg}")
            else:
                key = ".".join(str(p) for p in err["loc"] if p != "[key]") or "(inventory)"
                msg = err["msg"].removeprefix("Value error, ")
                lines.append(f"  {path}:{line_of(text, key)}: {key}: {msg}")
        raise InventoryError(f"invalid inventory {path}:\n" + "\n".join(lines)) from None


def line_of(text: str, key: str) -> int:
    """Line (1-based) of a dotted key in the YAML text: the deepest part of it that exists there."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return 1
    line = node.start_mark.line + 1 if node is not None else 1
    for part in key.split("."):
        if isinstance(node, yaml.MappingNode):
            hit = next(((k, v) for k, v in node.value if k.value == part), None)
            if hit is None:
                break
            line, node = hit[0].start_mark.line + 1, hit[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line
