"""Render what runs where: each process's role config file, systemd units, plain restart loops, host scripts.

Pure text generation (no ssh, no processes), so every piece is testable. Every process runs
``atlasrl <role> --config <remote_dir>/deploy/<name>.yaml``; the file is the role's settings from the inventory
plus the wiring deploy owns (addresses, ports, directories), written by the same ``atlasrl.config.roles.role_file``
`atlasrl up` uses. The learner on one host is ``atlasrl learner`` (``nproc`` ranks); on several hosts each runs
torchrun with a c10d rendezvous on the first learner host, its ranks reading the same file.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from atlasdeploy.inventory import Inventory
from atlasrl.config.roles import role_file
from atlasrl.config.schema import ROLE_MODELS

ORDER = ["coordinator", "envserver", "memory", "learner", "actor"]
"""Start order (stop: reversed); each stage waits for the gRPC health of the one before."""


@dataclass(frozen=True)
class Proc:
    host: str
    name: str           # unit name suffix: "envserver-0"
    role: str
    argv: list[str]
    workdir: str
    metrics: str        # host:port of /metrics
    config_path: str    # <workdir>/deploy/<name>.yaml
    config_text: str    # its content (written by the host script before the unit starts)
    env: dict[str, str] = field(default_factory=dict)   # TLS/token paths, CUDA_VISIBLE_DEVICES, ATLASRL_ROLE
    health: str | None = None   # host:port of its grpc.health.v1 service (None: a learner node other than rank 0)

    @property
    def unit(self) -> str:
        return f"atlasrl-{self.name}"

    @property
    def stage(self) -> int:
        return ORDER.index(self.role)


PKI_DIR = "pki"
"""Under each host's remote_dir: ca.pem, server.pem, server-key.pem and tokens/<role>.tokens of its roles only."""


def security_env(workdir: str, role: str) -> dict[str, str]:
    """What every role process reads its TLS/mTLS and token settings from (cli/common.py and, for torchrun's
    ranks, rpc.security.default_security): paths only, never token contents."""
    pki = f"{workdir}/{PKI_DIR}"
    return {"ATLASRL_TLS_CERT": f"{pki}/server.pem", "ATLASRL_TLS_KEY": f"{pki}/server-key.pem",
            "ATLASRL_TLS_CA": f"{pki}/ca.pem", "ATLASRL_MTLS": "1", "ATLASRL_TOKEN_FILE": f"{pki}/tokens/{role}.tokens"}


def addresses(inv: Inventory, role: str) -> list[str]:
    return [f"{h.address}:{spec.port + i}" for h in inv.hosts.values() if (spec := h.roles.get(role)) for i in range(spec.count)]


def processes(inv: Inventory, insecure: bool = False) -> list[Proc]:
    """Every role process of the inventory. Secure by default (mTLS + the role's token, see ``security_env``);
    ``insecure``: plaintext, every process started with --insecure (or ATLASRL_INSECURE=1 for torchrun ranks)."""
    coord = addresses(inv, "coordinator")[0]
    envs, memory = addresses(inv, "envserver"), addresses(inv, "memory")
    learner_hosts = [n for n, h in inv.hosts.items() if "learner" in h.roles]
    learner = addresses(inv, "learner")[:1]  # rank 0 serves the learner's gRPC
    out: list[Proc] = []
    counters: dict[str, int] = {}
    for hname, h in inv.hosts.items():
        d, py = inv.host_dir(hname), inv.python_of(hname)
        for role, spec in h.roles.items():
            for i in range(spec.count):
                idx = counters.get(role, 0)
                counters[role] = idx + 1
                name = role if role in ("coordinator", "memory") else f"{role}-{idx}"
                port, mport = spec.port + i, spec.metrics_port + i
                listen: dict[str, Any] = {"host": h.address, "port": port, "metrics_port": mport}
                wiring: dict[str, Any]
                if role == "coordinator":
                    wiring = {"server": listen, "state_dir": f"{d}/state/coordinator"}
                elif role == "memory":
                    wiring = {"server": listen, "data_dir": f"{d}/state/memory", "coordinator": coord}
                elif role == "envserver":
                    wiring = {**listen, "coordinator": coord}
                elif role == "learner":
                    # several learner hosts: rank 0 (first host) serves; every rank reads the same settings
                    first = inv.hosts[learner_hosts[0]].address
                    wiring = {**listen, "host": first, "model": inv.model, "ckpt_dir": f"{d}/state/checkpoints",
                              "coordinator": coord}
                else:  # actor
                    wiring = {**listen, "envs": envs, "model": inv.model, "actor_id": name, "coordinator": coord,
                              "learner": learner[0] if learner else None, "memory": memory[0] if memory else None,
                              "spool_dir": f"{d}/state/spool"}   # the actor's side of the episode accounting
                settings = inv.role_config(hname, role)
                env: dict[str, str] = {**spec.env, **({} if insecure else security_env(d, role))}
                if spec.devices is not None:
                    share = len(spec.devices) // spec.count
                    mine = [str(g) for g in spec.devices[i * share:(i + 1) * share]]
                    if "devices" in ROLE_MODELS[role].model_fields:   # the role sets its own CUDA_VISIBLE_DEVICES
                        wiring["devices"] = mine
                    else:
                        env["CUDA_VISIBLE_DEVICES"] = ",".join(mine)
                    if role == "learner":
                        settings.setdefault("nproc", share)
                cfg_path = f"{d}/deploy/{name}.yaml"
                text = role_file(role, settings, wiring)
                health: str | None = f"{h.address}:{port}"
                if role == "learner" and len(learner_hosts) > 1:
                    argv = multinode_learner(inv, hname, cfg_path, nproc=int(settings.get("nproc", 1)))
                    env["ATLASRL_ROLE"] = "learner"
                    if insecure:
                        env["ATLASRL_INSECURE"] = "1"
                    health = health if hname == learner_hosts[0] else None
                else:
                    argv = [py, "-m", "atlasrl.cli.main", role, "--config", cfg_path, *(["--insecure"] if insecure else [])]
                out.append(Proc(hname, name, role, argv, d, f"{h.address}:{mport}", cfg_path, text, env, health))
    return out


def multinode_learner(inv: Inventory, hname: str, cfg_path: str, nproc: int) -> list[str]:
    """torchrun on each learner host; the c10d rendezvous lives on the first learner host."""
    hosts = [n for n, h in inv.hosts.items() if "learner" in h.roles]
    first = inv.hosts[hosts[0]]
    # --local-addr: the address peers reach this node by (not whatever its hostname resolves to, often a loopback
    # address); is_host: the first node hosts the rendezvous store, whatever its hostname matches.
    return [inv.python_of(hname), "-m", "torch.distributed.run", f"--nnodes={len(hosts)}", f"--nproc-per-node={nproc}",
            "--rdzv-backend=c10d", f"--rdzv-endpoint={first.address}:{inv.rdzv_port}", f"--rdzv-id={inv.name}",
            f"--rdzv-conf=is_host={int(hname == hosts[0])}", f"--local-addr={inv.hosts[hname].address}",
            "-m", "atlasrl.learner.main", cfg_path]


def env_line(p: Proc, quote: bool = False) -> str:
    return "".join(f" {k}={shlex.quote(v) if quote else v}" for k, v in p.env.items())


def systemd_unit(p: Proc) -> str:
    return f"""[Unit]
Description=atlasrl {p.name} ({p.role})
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
WorkingDirectory={p.workdir}
Environment=PYTHONPATH={p.workdir} PYTHONUNBUFFERED=1 ATLASRL_LOG_LEVEL=INFO{env_line(p)}
ExecStart={shlex.join(p.argv)}
Restart=on-failure
RestartSec=2
KillMode=control-group
TimeoutStopSec=20
StandardOutput=append:{p.workdir}/logs/{p.name}.log
StandardError=append:{p.workdir}/logs/{p.name}.log

[Install]
WantedBy=multi-user.target
"""


def plain_supervisor(p: Proc) -> str:
    """Restart-on-failure loop for hosts without systemd; SIGTERM stops the child, then the loop."""
    log = f"{p.workdir}/logs/{p.name}.log"
    return f"""#!/usr/bin/env bash
# {p.unit}: restart-on-failure supervisor (hosts without systemd). Generated by docker-free-deploy/deploy.py.
cd {shlex.quote(p.workdir)}
export PYTHONPATH={shlex.quote(p.workdir)} PYTHONUNBUFFERED=1 ATLASRL_LOG_LEVEL=INFO{env_line(p, quote=True)}
child=""
trap 'stopping=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null; wait "$child"; exit 0' TERM INT
n=0
while true; do
  echo "=== $(date -Is) start #$n" >> {shlex.quote(log)}
  {shlex.join(p.argv)} >> {shlex.quote(log)} 2>&1 < /dev/null &
  child=$!
  wait "$child"; rc=$?
  [ -n "$stopping" ] && exit 0
  [ "$rc" -eq 0 ] && exit 0
  n=$((n + 1))
  echo "=== $(date -Is) exited with $rc; restart #$n" >> {shlex.quote(log)}
  sleep $(( n < 5 ? n : 5 ))
done
"""


def host_script(inv: Inventory, host: str, action: str, procs: list[Proc] | None = None) -> str:
    """Shell script run on ``host`` for start | stop | status (picks systemd or the plain loop), for ``procs``
    (default: all of the host's, secure)."""
    procs = [p for p in (processes(inv) if procs is None else procs) if p.host == host]
    d = inv.host_dir(host)
    mode = inv.service_manager
    lines = ["set -eu", f"D={shlex.quote(d)}", 'mkdir -p "$D/logs" "$D/deploy" "$D/state"',
             f'MODE={mode}', 'if [ "$MODE" = auto ]; then if [ -d /run/systemd/system ]; then MODE=systemd; else MODE=plain; fi; fi']
    if action == "status":
        lines.append('echo "mode $MODE"')
    for p in procs:
        unit_path = f"/etc/systemd/system/{p.unit}.service"
        run_sh, pidf = f"$D/deploy/{p.unit}.sh", f"$D/deploy/{p.unit}.pid"
        if action == "start":
            lines += [f'echo "offset {p.name} $(stat -c %s "$D/logs/{p.name}.log" 2>/dev/null || echo 0) $MODE"',
                      f"cat > {shlex.quote(p.config_path)} <<'YAML'\n{p.config_text}YAML",
                      'if [ "$MODE" = systemd ]; then',
                      f"cat > {unit_path} <<'UNIT'\n{systemd_unit(p)}UNIT",
                      f"systemctl daemon-reload && systemctl enable --now {p.unit}",
                      "else",
                      f"cat > {run_sh} <<'SH'\n{plain_supervisor(p)}SH",
                      f'if [ -f {pidf} ] && kill -0 "$(cat {pidf})" 2>/dev/null; then echo "{p.unit} already running";',
                      f'else setsid nohup bash {run_sh} > /dev/null 2>&1 < /dev/null & echo $! > {pidf}; fi',
                      "fi", f'echo "started {p.unit} ($MODE)"']
        elif action == "stop":
            lines += [f'if [ "$MODE" = systemd ]; then systemctl stop {p.unit} || true; else',
                      f'if [ -f {pidf} ]; then pid=$(cat {pidf}); kill -TERM "$pid" 2>/dev/null || true;',
                      'for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done;',
                      f'kill -KILL -- -"$pid" 2>/dev/null || true; rm -f {pidf}; fi; fi', f'echo "stopped {p.unit}"']
        elif action == "status":
            lines += [f'if [ "$MODE" = systemd ]; then s=$(systemctl is-active {p.unit} || true); else',
                      f'if [ -f {pidf} ] && kill -0 "$(cat {pidf})" 2>/dev/null; then s=active; else s=inactive; fi; fi',
                      f'r=$(grep -c "restart #" "$D/logs/{p.name}.log" 2>/dev/null || true)',
                      # the last refusal of the latest lines first: a crash's traceback ends in noise (event loop
                      # closed, ...) that would hide the refusal that caused it
                      f'e=$(tail -n 400 "$D/logs/{p.name}.log" 2>/dev/null | grep -E "{AUTH_PATTERN}" | tail -n 1 '
                      f'| cut -c1-300 || true)',
                      f'[ -n "$e" ] || e=$(grep -E "{ERROR_PATTERN}" "$D/logs/{p.name}.log" 2>/dev/null | tail -n 1 '
                      f'| cut -c1-300 || true)',
                      f'echo "{p.unit} $s restarts=${{r:-0}} last_error=$e"']
        else:
            raise ValueError(f"unknown action {action!r}")
    return "\n".join(lines) + "\n"


AUTH_PATTERN = "UNAUTHENTICATED|PERMISSION_DENIED|refusing"
"""Refusals (a wrong token, an unsafe bind): shown before any other error line of the last 400."""
ERROR_PATTERN = "UNAUTHENTICATED|PERMISSION_DENIED|refusing|Traceback|Error:|error:"
"""Log lines `deploy status` shows as a process's last error (a refused token, an unsafe bind, a crash)."""


def prepare_script(inv: Inventory, host: str) -> str:
    """Create the venv (scripts/install.sh) unless the host names an existing one."""
    d = inv.host_dir(host)
    if inv.hosts[host].venv:
        return f"set -eu\ntest -x {shlex.quote(inv.python_of(host))} || {{ echo 'venv {inv.hosts[host].venv} missing' >&2; exit 1; }}\n"
    flags = " ".join(shlex.quote(f) for f in inv.install_flags)
    return f"set -eu\ncd {shlex.quote(d)}\nPYTHON={shlex.quote(inv.python)} bash scripts/install.sh {flags}\n"


def prometheus_targets(inv: Inventory) -> list[dict]:
    return [{"targets": [p.metrics], "labels": {"role": p.role, "name": p.name, "host": p.host}} for p in processes(inv)]
