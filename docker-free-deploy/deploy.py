#!/usr/bin/env python3
"""Deploy atlasrl to hosts over ssh, without containers.

    python docker-free-deploy/deploy.py INVENTORY plan      # what runs where (command lines)
    python docker-free-deploy/deploy.py INVENTORY up        # push code, prepare venvs, start every role
    python docker-free-deploy/deploy.py INVENTORY push|prepare|start|stop|status [--hosts a,b]
    python docker-free-deploy/deploy.py INVENTORY targets   # write targets/<name>.json for prometheus.yml

Each host gets the source tree (tar over ssh) in its remote_dir, a venv made by
scripts/install.sh (or an existing one), and one service per role process: a
systemd unit with Restart=on-failure where systemd runs, otherwise a plain
restart-on-failure loop. ``ssh: local`` runs a host's commands on this machine
(one machine as several hosts, each with its own remote_dir: how tests/deploy runs).
Start order: coordinator, then env servers, memory and learners, then actors.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(REPO))  # atlasrl.config: the role configs deploy writes (one definition with `atlasrl up`)

from atlasdeploy.inventory import Inventory, InventoryError, load_inventory
from atlasdeploy.render import host_script, prepare_script, processes, prometheus_targets

ORDER = ["coordinator", "envserver", "memory", "learner", "actor"]
EXCLUDE = [".git", ".venv", ".venv-vllm", ".cache", "runs", "__pycache__", "*.pyc", ".pytest_cache", ".hypothesis", "*.egg-info"]


def remote(inv: Inventory, host: str, script: str, *, stdin_bytes: bytes | None = None, check: bool = True) -> str:
    """Run a bash script on a host (ssh, or locally for ``ssh: local``); returns stdout."""
    h = inv.hosts[host]
    cmd = ["bash", "-s"] if h.ssh == "local" else ["ssh", "-p", str(h.ssh_port), "-o", "BatchMode=yes", h.ssh, "bash -s"]
    r = subprocess.run(cmd, input=script.encode() if stdin_bytes is None else stdin_bytes, capture_output=True)
    if check and r.returncode != 0:
        raise SystemExit(f"[{host}] failed ({r.returncode}):\n{r.stderr.decode(errors='replace')}")
    return r.stdout.decode(errors="replace")


def push(inv: Inventory, host: str) -> None:
    """Copy the source tree into the host's remote_dir (tar stream; no rsync needed)."""
    d = inv.host_dir(host)
    if Path(d).resolve() == REPO and inv.hosts[host].ssh == "local":
        return
    tar = subprocess.run(["tar", "-C", str(REPO), *[f"--exclude={e}" for e in EXCLUDE], "-czf", "-", "."],
                         capture_output=True, check=True).stdout
    h = inv.hosts[host]
    unpack = f"mkdir -p '{d}' && tar -C '{d}' -xzf -"
    cmd = ["bash", "-c", unpack] if h.ssh == "local" else ["ssh", "-p", str(h.ssh_port), "-o", "BatchMode=yes", h.ssh, unpack]
    r = subprocess.run(cmd, input=tar, capture_output=True)
    if r.returncode != 0:
        raise SystemExit(f"[{host}] push failed: {r.stderr.decode(errors='replace')}")


def settings_line(p) -> str:
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


def hosts_in_order(inv: Inventory, selected: list[str] | None, reverse: bool = False) -> list[str]:
    rank = {h: min(ORDER.index(r) for r in inv.hosts[h].roles) for h in inv.hosts}
    names = sorted(selected or inv.hosts, key=lambda h: rank[h], reverse=reverse)
    unknown = [h for h in names if h not in inv.hosts]
    if unknown:
        raise SystemExit(f"unknown hosts {unknown}; inventory has {sorted(inv.hosts)}")
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inventory", type=Path)
    ap.add_argument("action", choices=["plan", "push", "prepare", "start", "stop", "status", "up", "targets"])
    ap.add_argument("--hosts", help="comma-separated subset of hosts")
    args = ap.parse_args(argv)
    try:
        inv = load_inventory(args.inventory)
    except InventoryError as e:
        print(e, file=sys.stderr)
        return 2
    selected = args.hosts.split(",") if args.hosts else None
    if args.action == "plan":
        for p in processes(inv):
            print(f"[{p.host}] {p.unit}: {' '.join(p.argv)}")
            print("    " + settings_line(p))
        return 0
    if args.action == "targets":
        out = HERE / "targets" / f"{inv.name}.json"
        out.write_text(json.dumps(prometheus_targets(inv), indent=2) + "\n")
        print(f"wrote {out}")
        return 0
    steps = {"up": ["push", "prepare", "start"]}.get(args.action, [args.action])
    for step in steps:
        for host in hosts_in_order(inv, selected, reverse=(step == "stop")):
            if step == "push":
                push(inv, host)
                print(f"[{host}] pushed source to {inv.host_dir(host)}")
            elif step == "prepare":
                remote(inv, host, prepare_script(inv, host))
                print(f"[{host}] venv ready: {inv.python_of(host)}")
            else:
                print("\n".join(f"[{host}] {line}" for line in remote(inv, host, host_script(inv, host, step)).splitlines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
