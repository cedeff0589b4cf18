#!/usr/bin/env python3
"""Deploy atlasrl to hosts over ssh, without containers, secure by default.

    python docker-free-deploy/deploy.py INVENTORY plan      # what runs where, its settings and its security
    python docker-free-deploy/deploy.py INVENTORY up        # check hosts, PKI + tokens, push, prepare, start (gated)
    python docker-free-deploy/deploy.py INVENTORY status    # every process: supervisor, restarts, health, last error
    python docker-free-deploy/deploy.py INVENTORY logs [--name actor-0] [-n 40]
    python docker-free-deploy/deploy.py INVENTORY stop      # reverse order: actors, learner, memory, env servers, coordinator
    python docker-free-deploy/deploy.py INVENTORY accounting  # fetch the actors' spools + the learner's ledger, reconcile
    python docker-free-deploy/deploy.py INVENTORY slurm     # a heterogeneous sbatch script from the same inventory
    python docker-free-deploy/deploy.py INVENTORY check|push|prepare|start|targets [--hosts a,b]

Security: ``up`` makes the run's PKI and role tokens once (``atlasrl certs init``'s code; SANs = every host's
name and address) in ``--state-dir`` (default ~/.cache/atlasrl-deploy/<name>; ca-key.pem stays there), and gives
each host ca.pem, server.pem, server-key.pem and the token files of *its* roles only (<remote_dir>/pki). Every
role runs with mTLS and its token (ATLASRL_TLS_*/ATLASRL_TOKEN_FILE in its unit). ``--insecure`` is the only way
to plaintext, and ``plan`` says so in red.

Each host gets the code (atlasrl/, pyproject.toml, scripts/: a tar stream over ssh) in its remote_dir, a venv made
by scripts/install.sh (or an existing ``venv``), and one service per role process: a systemd unit with
Restart=on-failure where systemd runs, otherwise a plain restart-on-failure loop. ``ssh: local`` runs a host's
commands on this machine. Start order: coordinator, env servers, memory, learner, actors; each stage starts only
when the one before serves gRPC health, probed on each host at the address its peers dial, over mTLS.

Hand-written OpenSSH (ssh -F, BatchMode) rather than fabric/pyinfra: deploy needs one remote bash script per
host and step, a tar stream and parallel hosts; that is ~60 lines here, with no extra dependency on the
operator's machine and the user's own ssh config (ProxyJump, keys, ControlMaster) working unchanged.
"""
from __future__ import annotations

import argparse
import io
import ipaddress
import json
import os
import shlex
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(REPO))  # atlasrl.config: the role configs deploy writes (one definition with `atlasrl up`)

from atlasdeploy.inventory import Inventory, InventoryError, is_loopback, line_of, load_inventory
from atlasdeploy.render import (
    ORDER,
    PKI_DIR,
    Proc,
    host_script,
    prepare_script,
    processes,
    prometheus_targets,
)

CODE = ["atlasrl", "pyproject.toml", "README.md", "scripts"]
"""What a host runs: the package, its build file (install.sh does pip install -e .) and the install scripts."""
EXCLUDE = ["__pycache__", "*.pyc"]
RED, BOLD, RESET = "\033[1;31m", "\033[1m", "\033[0m"


class DeployError(Exception):
    """A step failed; the message names the host (and the inventory key where one is to blame)."""


# --- ssh ---------------------------------------------------------------------------------------------------------

def ssh_argv(inv: Inventory, host: str, remote_cmd: str) -> list[str]:
    h = inv.hosts[host]
    if h.ssh == "local":
        return ["bash", "-c", remote_cmd]
    cfg = ["-F", inv.ssh_config] if inv.ssh_config else []
    return ["ssh", *cfg, "-p", str(h.ssh_port), "-o", "BatchMode=yes", "-o", f"ConnectTimeout={inv.ssh_connect_timeout_s}",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", h.ssh, remote_cmd]


def remote(inv: Inventory, host: str, script: str, *, stdin_bytes: bytes | None = None, args: list[str] | None = None,
           check: bool = True, timeout: float = 600, interpreter: str = "bash -s") -> subprocess.CompletedProcess:
    """Run a script on a host (stdin), or ``interpreter`` with ``args`` and ``stdin_bytes``; stdout/stderr as text."""
    cmd = interpreter + "".join(" " + shlex.quote(a) for a in (args or []))
    try:
        r = subprocess.run(ssh_argv(inv, host, cmd), input=script.encode() if stdin_bytes is None else stdin_bytes,
                           capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DeployError(f"[{host}] no answer within {timeout:.0f}s") from None
    out = subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"))
    if inv.hosts[host].ssh != "local" and r.returncode == 255:
        h = inv.hosts[host]
        raise DeployError(f"host {host} is unreachable over ssh ({h.ssh}, port {h.ssh_port}): "
                          f"{out.stderr.strip().splitlines()[-1] if out.stderr.strip() else 'ssh exited 255'}")
    if check and r.returncode != 0:
        raise DeployError(f"[{host}] failed ({r.returncode}):\n{out.stderr.strip() or out.stdout.strip()}")
    return out


def on_hosts(hosts: list[str], fn) -> dict[str, object]:
    """fn(host) on every host at once; the first failure (by host order) is raised after all finished."""
    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as ex:
        futures = {h: ex.submit(fn, h) for h in hosts}
    results, errors = {}, []
    for h, f in futures.items():
        try:
            results[h] = f.result()
        except DeployError as e:
            errors.append(str(e))
    if errors:
        raise DeployError("\n".join(errors))
    return results


# --- checks ------------------------------------------------------------------------------------------------------

def check_host(inv: Inventory, inv_path: Path, host: str) -> str:
    """Reachable, Python 3.11+ (the venv's, or the one that makes it), the address is the host's, the GPUs exist."""
    h = inv.hosts[host]
    py = inv.python_of(host) if h.venv else inv.python
    script = f"""
py={shlex.quote(py)}
if command -v "$py" >/dev/null 2>&1; then
  "$py" -c 'import sys; print("python", "%d.%d" % sys.version_info[:2])' || echo "python broken"
else echo "python missing"; fi
echo "addrs $( (ip -o addr show 2>/dev/null | awk '{{split($4, a, "/"); print a[1]}}') | tr '\\n' ' ')"
echo "gpus $(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)"
"""
    out = remote(inv, host, script, timeout=inv.ssh_connect_timeout_s + 30).stdout
    facts = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    where = f"hosts.{host}.venv" if h.venv else "python"
    pyv = facts.get("python", "missing")
    if pyv in ("missing", "broken"):
        raise DeployError(f"host {host}: no usable Python: {py} is {pyv} there ({inv_path}:{line_of(inv_path.read_text(), where)}: {where})")
    if tuple(int(x) for x in pyv.split(".")) < (3, 11):
        raise DeployError(f"host {host}: {py} is Python {pyv}; atlasrl needs 3.11+ ({where})")
    addrs = facts.get("addrs", "").split()
    try:
        literal = ipaddress.ip_address(h.address)
    except ValueError:
        literal = None
    if literal is not None and addrs and h.address not in addrs and not (h.ssh == "local" and is_loopback(h.address)):
        key = f"hosts.{host}.address"
        raise DeployError(f"{inv_path}:{line_of(inv_path.read_text(), key)}: {key}: {h.address} is not an address of "
                          f"host {host} (it has {', '.join(addrs)}); its roles could not bind it")
    gpus = int(facts.get("gpus", "0") or 0)
    if h.gpus > gpus:
        key = f"hosts.{host}.gpus"
        raise DeployError(f"{inv_path}:{line_of(inv_path.read_text(), key)}: {key}: {h.gpus} GPUs declared, "
                          f"nvidia-smi on {host} lists {gpus}")
    return f"[{host}] ok: Python {pyv}, address {h.address}" + (f", {gpus} GPUs" if gpus else "")


# --- PKI ---------------------------------------------------------------------------------------------------------

def ensure_pki(inv: Inventory, state: Path) -> Path:
    """The run's CA, certificates and role tokens (atlasrl certs init), made once per state dir and SAN set."""
    from atlasrl.rpc.devcerts import init_dev_pki

    pki = state / "pki"
    names = sorted({*inv.hosts, "localhost"})
    ips = sorted({h.address for h in inv.hosts.values() if _is_ip(h.address)} | {"127.0.0.1"})
    names += sorted({h.address for h in inv.hosts.values() if not _is_ip(h.address)} - set(names))
    sans = {"hosts": names, "ips": ips}
    marker = pki / "sans.json"
    if not (marker.is_file() and json.loads(marker.read_text()) == sans and (pki / "ca.pem").is_file()):
        init_dev_pki(pki, names, ips)
        marker.write_text(json.dumps(sans))
    return pki


def _is_ip(a: str) -> bool:
    try:
        ipaddress.ip_address(a)
        return True
    except ValueError:
        return False


def pki_bundle(pki: Path, roles: set[str]) -> bytes:
    """What one host gets: ca.pem, server.pem, server-key.pem and tokens/<role>.tokens of its roles only."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        files = [("ca.pem", 0o644), ("server.pem", 0o644), ("server-key.pem", 0o600)]
        files += [(f"tokens/{r}.tokens", 0o600) for r in sorted(roles)]
        for name, mode in files:
            data = (pki / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# --- steps -------------------------------------------------------------------------------------------------------

def push(inv: Inventory, host: str, pki: Path | None) -> str:
    """Copy the code (and, secure, the host's PKI bundle) into the host's remote_dir: tar streams, no rsync needed."""
    d = inv.host_dir(host)
    local_repo = Path(d).resolve() == REPO and inv.hosts[host].ssh == "local"
    if not local_repo:
        tar = subprocess.run(["tar", "-C", str(REPO), *[f"--exclude={e}" for e in EXCLUDE], "-czf", "-", *CODE],
                             capture_output=True, check=True).stdout
        remote(inv, host, "", stdin_bytes=tar, interpreter=f"mkdir -p {shlex.quote(d)} && tar -C {shlex.quote(d)} -xzf -")
    q = shlex.quote(f"{d}/{PKI_DIR}")
    if pki is None:   # insecure: no certificates or tokens on the host
        remote(inv, host, f"rm -rf {q}\n")
        return f"[{host}] pushed code to {d} (no PKI: --insecure)"
    roles = set(inv.hosts[host].roles)
    remote(inv, host, "", stdin_bytes=pki_bundle(pki, roles),
           interpreter=f"rm -rf {q} && mkdir -p {q} && chmod 700 {q} && tar -C {q} -xf -")
    return f"[{host}] pushed code{' (in place)' if local_repo else ''} and PKI to {d} (tokens: {', '.join(sorted(roles))})"


def probe(inv: Inventory, host: str, procs: list[Proc], offsets: dict[str, tuple[int, str]], timeout: float,
          mode: str = "plain") -> list[dict]:
    """Run atlasdeploy/probe.py on the host with its Python: health of each process at its peers' address.
    ``offsets``: name -> (log size before its start, service mode) from the start script; without one, only
    whether the process is there and answers."""
    d = inv.host_dir(host)
    targets = [{"name": p.name, "health": p.health, "log": f"{d}/logs/{p.name}.log", "offset": offsets.get(p.name, (-1, ""))[0],
                "mode": offsets.get(p.name, (-1, mode))[1], "pidfile": f"{d}/deploy/{p.unit}.pid", "unit": p.unit}
               for p in procs]
    pki = f"{d}/{PKI_DIR}" if any(p.env.get("ATLASRL_TLS_CA") for p in procs) else ""
    r = remote(inv, host, "", stdin_bytes=(HERE / "atlasdeploy" / "probe.py").read_bytes(), check=False,
               interpreter=f"{shlex.quote(inv.python_of(host))} -", args=[json.dumps(targets), str(timeout), pki],
               timeout=timeout + 60)
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    if len(rows) != len(procs):
        raise DeployError(f"[{host}] health probe failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return rows


def start_stage(inv: Inventory, procs: list[Proc], ready_timeout: float) -> None:
    """Start these processes (one script per host, hosts at once), then wait for each to serve health."""
    hosts = sorted({p.host for p in procs}, key=list(inv.hosts).index)

    def one(host: str) -> list[str]:
        mine = [p for p in procs if p.host == host]
        out = remote(inv, host, host_script(inv, host, "start", mine)).stdout
        offsets = {}
        for line in out.splitlines():
            if line.startswith("offset "):
                _, name, size, mode = line.split()
                offsets[name] = (int(size), mode)
        lines = [f"[{host}] {line}" for line in out.splitlines() if not line.startswith("offset ")]
        bad = []
        for row in probe(inv, host, mine, offsets, ready_timeout):
            lines.append(f"[{host}] {row['name']}: {row['state']} after {row['seconds']:.1f}s")
            if row["state"] not in ("SERVING", "RUNNING"):
                bad.append(f"[{host}] {row['name']} is {row['state']} {row['detail']}\n--- its log since this start:\n{row['log']}")
        if bad:
            raise DeployError("\n".join(lines + bad))
        return lines

    for lines in on_hosts(hosts, one).values():
        print("\n".join(lines), flush=True)


def stop_stage(inv: Inventory, procs: list[Proc]) -> None:
    hosts = sorted({p.host for p in procs}, key=list(inv.hosts).index)
    res = on_hosts(hosts, lambda host: remote(inv, host, host_script(inv, host, "stop", [p for p in procs if p.host == host])).stdout)
    for host, out in res.items():
        print("\n".join(f"[{host}] {line}" for line in str(out).splitlines()), flush=True)


def status(inv: Inventory, procs: list[Proc], hosts: list[str]) -> int:
    """Per process: supervisor state, restarts, health at its address, last error line of its log; then the
    coordinator's table (atlasrl status, run on the coordinator's host with its own certificate and token)."""
    def one(host: str) -> list[tuple[bool, str]]:
        mine = [p for p in procs if p.host == host]
        sup = {line.split(" ", 1)[0]: line.split(" ", 1)[1]
               for line in remote(inv, host, host_script(inv, host, "status", mine)).stdout.splitlines() if " " in line}
        mode = sup.pop("mode", "plain").strip()
        rows = {r["name"]: r for r in probe(inv, host, mine, {}, timeout=0, mode=mode)}
        out = []
        for p in mine:
            state, _, rest = sup.get(p.unit, "unknown").partition(" ")
            restarts, _, err = rest.partition(" last_error=")
            health = rows[p.name]["state"] if state == "active" else "-"
            good = state == "active" and health in ("SERVING", "RUNNING")
            out.append((good, f"{host:<12} {p.name:<14} {state:<9} {restarts:<11} health={health:<12} {err.strip()}"))
        return out

    print(f"{'host':<12} {'process':<14} {'state':<9} {'restarts':<11} {'health':<19} last error")
    ok = True
    for rows in on_hosts(hosts, one).values():
        for good, line in rows:  # type: ignore[attr-defined]
            print(line)
            ok &= good
    ctl = inv.coordinator_host
    coord = next((p for p in procs if p.role == "coordinator"), None)
    if ctl in hosts and coord is not None:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in coord.env.items())
        r = remote(inv, ctl, f"cd {shlex.quote(coord.workdir)} && {env} PYTHONPATH=. COLUMNS=160 {shlex.quote(inv.python_of(ctl))} "
                             f"-m atlasrl.cli.main status --coordinator {coord.health}\n", check=False, timeout=60)
        said = r.stdout.rstrip() or "\n".join(r.stderr.strip().splitlines()[-1:]) or "(no answer)"
        print(f"\ncoordinator {coord.health}:\n{said}")
    return 0 if ok else 3


def logs(inv: Inventory, procs: list[Proc], lines: int) -> None:
    hosts = sorted({p.host for p in procs}, key=list(inv.hosts).index)

    def one(host: str) -> str:
        d = inv.host_dir(host)
        script = "".join(f'echo "==> [{host}] {p.name}"; tail -n {lines} {shlex.quote(f"{d}/logs/{p.name}.log")} 2>&1 || true\n'
                         for p in procs if p.host == host)
        return remote(inv, host, script).stdout

    for out in on_hosts(hosts, one).values():
        print(str(out).rstrip())


def accounting(inv: Inventory, procs: list[Proc], state: Path) -> int:
    """Fetch every actor's spool and the learner's ledger (with their SQLite WAL files) and reconcile them."""
    from atlasrl.up.accounting import reconcile

    dest = state / "accounting"
    spools: list[Path] = []
    ledger: Path | None = None
    for p in procs:
        if p.role not in ("actor", "learner") or (p.role == "learner" and p.health is None):
            continue
        d = inv.host_dir(p.host)
        sub = "state/spool" if p.role == "actor" else "state/checkpoints"
        pattern = f"{p.name}.sqlite*" if p.role == "actor" else "ledger.sqlite*"
        here = dest / p.host / sub
        here.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(ssh_argv(inv, p.host, f"cd {shlex.quote(f'{d}/{sub}')} && tar -cf - {pattern}"), capture_output=True)
        if r.returncode != 0:
            raise DeployError(f"[{p.host}] cannot read {d}/{sub}/{pattern}: {r.stderr.decode(errors='replace').strip()}")
        with tarfile.open(fileobj=io.BytesIO(r.stdout)) as t:
            t.extractall(here, filter="data")
        if p.role == "actor":
            spools.append(here / f"{p.name}.sqlite")
        else:
            ledger = here / "ledger.sqlite"
    if not spools:
        raise DeployError("no actor in the inventory: nothing to reconcile")
    acc = reconcile(spools, ledger)
    print(f"spools: {', '.join(str(s) for s in spools)}\nledger: {ledger}")
    print(acc.table())
    (dest / "accounting.json").write_text(json.dumps(acc.as_dict(), indent=2))
    return 0 if acc.balanced else 1


def plan(inv: Inventory, procs: list[Proc], insecure: bool, state: Path) -> None:
    from atlasdeploy.render import env_line

    if insecure:
        print(f"{RED}!!! INSECURE (--insecure): every role serves plaintext gRPC without tokens on its host's address.\n"
              f"!!! Anyone who can reach these ports can push episodes, publish weights and stop the run.{RESET}")
    else:
        print(f"{BOLD}security: mTLS + role tokens{RESET} (PKI and tokens in {state / 'pki'}; ca-key.pem stays there; "
              f"each host gets ca.pem, server.pem, server-key.pem and only its roles' token files in <remote_dir>/{PKI_DIR})")
    for p in sorted(procs, key=lambda p: p.stage):
        print(f"[{p.host}] {p.unit}: {' '.join(p.argv)}")
        if p.env:
            print("    env:" + env_line(p))
        print("    " + settings_line(p))


def settings_line(p: Proc) -> str:
    """The settings of a process's config file that differ from its role's defaults, as key=value."""
    import yaml

    from atlasrl.config.roles import role_config

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
        return out

    default, mine = flat(role_config(p.role, {}).model_dump(mode="json")), flat(yaml.safe_load(p.config_text))
    return " ".join(f"{k}={json.dumps(v)}" for k, v in mine.items() if default.get(k, object()) != v)


# --- main --------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inventory", type=Path)
    ap.add_argument("action", choices=["plan", "check", "push", "prepare", "start", "stop", "status", "up", "logs",
                                       "accounting", "targets", "slurm"])
    ap.add_argument("--hosts", help="comma-separated subset of hosts")
    ap.add_argument("--name", help="logs: only these processes (comma-separated, e.g. actor-0,learner-0)")
    ap.add_argument("-n", "--lines", type=int, default=40, help="logs: lines per process")
    ap.add_argument("--insecure", action="store_true", help="plaintext gRPC without tokens (plan prints it in red)")
    ap.add_argument("--state-dir", type=Path, help="operator-side state: the PKI (ca-key.pem), fetched ledgers "
                                                   "(default ~/.cache/atlasrl-deploy/<name>)")
    ap.add_argument("--ready-timeout", type=float, default=180.0, help="seconds each process has to serve health")
    ap.add_argument("--skip-prepare", action="store_true", help="up: do not run scripts/install.sh (venvs are in place)")
    ap.add_argument("--out", type=Path, help="slurm: write the batch script here (default: stdout)")
    args = ap.parse_args(argv)
    try:
        inv = load_inventory(args.inventory)
    except InventoryError as e:
        print(e, file=sys.stderr)
        return 2
    state = args.state_dir or Path(os.path.expanduser("~/.cache/atlasrl-deploy")) / inv.name
    selected = args.hosts.split(",") if args.hosts else list(inv.hosts)
    unknown = [h for h in selected if h not in inv.hosts]
    if unknown:
        print(f"unknown hosts {unknown}; the inventory has {sorted(inv.hosts)}", file=sys.stderr)
        return 2
    procs = [p for p in processes(inv, insecure=args.insecure) if p.host in selected]
    if args.name:
        procs = [p for p in procs if p.name in args.name.split(",")]
    try:
        if args.action == "plan":
            plan(inv, procs, args.insecure, state)
            return 0
        if args.action == "targets":
            out = HERE / "targets" / f"{inv.name}.json"
            out.write_text(json.dumps(prometheus_targets(inv), indent=2) + "\n")
            print(f"wrote {out}")
            return 0
        if args.action == "slurm":
            from atlasdeploy.slurm import sbatch_script

            text = sbatch_script(inv, insecure=args.insecure)
            if args.out:
                args.out.write_text(text)
                print(f"wrote {args.out}")
            else:
                print(text, end="")
            return 0
        if args.action == "status":
            return status(inv, procs, selected)
        if args.action == "logs":
            logs(inv, procs, args.lines)
            return 0
        if args.action == "accounting":
            return accounting(inv, procs, state)
        if args.action == "stop":
            for stage in reversed(range(len(ORDER))):
                stop_stage(inv, [p for p in procs if p.stage == stage])
            return 0
        t0 = time.monotonic()
        steps = ["check", "push", "prepare", "start"] if args.action == "up" else [args.action]
        if args.skip_prepare and "prepare" in steps:
            steps.remove("prepare")
        if args.insecure and args.action in ("up", "start"):
            print(f"{RED}!!! INSECURE (--insecure): plaintext gRPC, no tokens{RESET}", flush=True)
        for step in steps:
            if step == "check":
                for line in on_hosts(selected, lambda h: check_host(inv, args.inventory, h)).values():
                    print(line, flush=True)
            elif step == "push":
                pki = None if args.insecure else ensure_pki(inv, state)
                for line in on_hosts(selected, lambda h, pki=pki: push(inv, h, pki)).values():
                    print(line, flush=True)
            elif step == "prepare":
                def prep(h: str) -> str:
                    remote(inv, h, prepare_script(inv, h), timeout=1800)
                    return f"[{h}] venv ready: {inv.python_of(h)}"
                for line in on_hosts(selected, prep).values():
                    print(line, flush=True)
            else:
                for stage in range(len(ORDER)):
                    stage_procs = [p for p in procs if p.stage == stage]
                    if stage_procs:
                        start_stage(inv, stage_procs, args.ready_timeout)
        if args.action in ("up", "start"):
            print(f"{args.action}: {len(procs)} processes on {len({p.host for p in procs})} hosts serving "
                  f"in {time.monotonic() - t0:.1f}s", flush=True)
        return 0
    except DeployError as e:
        print(f"deploy {args.action} failed:\n{e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
