"""A secure run deployed by docker-free-deploy/deploy.py over real OpenSSH onto three network-namespace hosts.

host-a: coordinator + memory + learner, host-b: env server, host-c: actor; mTLS and role tokens (the deploy's own
PKI); the tiny model on FrozenLake. The test cuts host-c's link for 20 s, checks the actor resumes without any
restart, stops the run with `deploy.py stop` and reconciles the episode accounting (`deploy.py accounting`).
A second test runs the learner on two namespace hosts: torchrun --nnodes 2 over a c10d rendezvous, gloo.

Bounded: every wait has a deadline, the learner stops by itself at max_updates, and the namespaces (with any
process left in them) are removed in the fixture's finally and at exit. Figures go to stdout (pytest -s) and to
$ATLASRL_MULTIHOST_REPORT (JSON) when set.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from netns_hosts import NamespaceHosts, available

from atlasrl.clients.coordinator import CoordinatorClient
from atlasrl.rpc.config import ChannelConfig, SecurityConfig
from atlasrl.v1 import coordinator_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docker-free-deploy" / "deploy.py"
HOSTS = ["host-a", "host-b", "host-c"]
PARTITION_S = 20.0

pytestmark = [pytest.mark.multihost, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    why = available()
    if why:
        if os.environ.get("ATLASRL_REQUIRE_MULTIHOST"):
            pytest.fail(f"multihost tests required (ATLASRL_REQUIRE_MULTIHOST) but {why}")
        pytest.skip(why)
    with NamespaceHosts(HOSTS, tmp_path_factory.mktemp("netns")) as h:
        yield h


@pytest.fixture(scope="module")
def model():
    from atlasrl.models.tiny import tiny_model_path

    return str(tiny_model_path())


def inventory(tmp: Path, hosts: NamespaceHosts, model: str, roles: dict[str, dict], **config) -> Path:
    inv = {
        "name": "mh", "ssh_config": str(hosts.ssh_config), "service_manager": "plain", "model": model,
        "config": {
            "coordinator": {"lease_ttl_s": 5.0, "max_staleness": 2},
            "envserver": {"envs": ["frozenlake"], "workers": 0, "max_envs": 32},
            "learner": {"algo": "gigpo", "lr": 1.0e-3, "batch_episodes": 8, "max_staleness": 2, "idle_poll_s": 0.5,
                        "entropy_coef": 0.3, **config.pop("learner", {})},
            "actor": {"num_envs": 8, "group_size": 4, "memory_hints": "none", "max_turns": 24, "nice": 10,
                      **config.pop("actor", {})},
        },
        "hosts": {n: {"ssh": n, "address": hosts.address(n), "remote_dir": str(tmp / "remote" / n), "venv": sys.prefix,
                      "roles": roles[n]} for n in roles},
    }
    path = tmp / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    return path


def deploy(inv: Path, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, str(DEPLOY), str(inv), *args, "--state-dir", str(inv.parent / "state")],
                       capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"deploy {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def admin(inv: Path) -> ChannelConfig:
    pki = inv.parent / "state" / "pki"
    return ChannelConfig(security=SecurityConfig(tls_cert=pki / "client.pem", tls_key=pki / "client-key.pem",
                                                 tls_ca=pki / "ca.pem", token_file=pki / "tokens" / "admin.tokens"))


def cluster(client: CoordinatorClient) -> pb.ClusterStatus | None:
    try:
        return asyncio.run(client.status())
    except Exception:  # noqa: BLE001 - not answering (yet)
        return None


def member(st: pb.ClusterStatus | None, role: int) -> pb.MemberInfo | None:
    return next((m for m in st.members if m.role == role and m.alive), None) if st else None


def wait(pred, timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        time.sleep(every)


def trained(client: CoordinatorClient) -> int:
    lrn = member(cluster(client), pb.ROLE_LEARNER)
    return lrn.counters.get("samples_trained", 0) if lrn else -1


def role_pid(remote_dir: Path, name: str) -> int:
    """The role process under its plain supervisor loop (deploy/atlasrl-<name>.pid holds the loop's pid)."""
    loop = int((remote_dir / "deploy" / f"atlasrl-{name}.pid").read_text())
    kids = Path(f"/proc/{loop}/task/{loop}/children").read_text().split()
    assert kids, f"{name}: its supervisor loop {loop} has no child"
    return int(kids[0])


def report(**figures) -> None:
    print("MULTIHOST " + json.dumps(figures), flush=True)
    if os.environ.get("ATLASRL_MULTIHOST_REPORT"):
        with open(os.environ["ATLASRL_MULTIHOST_REPORT"], "a") as f:
            f.write(json.dumps(figures) + "\n")


def test_secure_three_hosts_train_partition_stop(hosts, model, tmp_path):
    roles = {
        "host-a": {"coordinator": {"port": 50050, "metrics_port": 9100}, "memory": {"port": 50055, "metrics_port": 9101},
                   "learner": {"port": 50052, "metrics_port": 9102}},
        "host-b": {"envserver": {"port": 50060, "metrics_port": 9110}},
        "host-c": {"actor": {"port": 50070, "metrics_port": 9120}},
    }
    inv = inventory(tmp_path, hosts, model, roles, learner={"max_updates": 400})
    plan = deploy(inv, "plan").stdout
    assert "security: mTLS + role tokens" in plan and "INSECURE" not in plan
    assert f"ATLASRL_TOKEN_FILE={tmp_path}/remote/host-c/pki/tokens/actor.tokens" in plan

    t0 = time.monotonic()
    up = deploy(inv, "up", "--skip-prepare", timeout=600)
    deploy_s = time.monotonic() - t0
    out = up.stdout
    for host, name in [("host-a", "coordinator"), ("host-b", "envserver-0"), ("host-a", "memory"), ("host-a", "learner-0"),
                       ("host-c", "actor-0")]:
        assert f"[{host}] {name}: SERVING" in out, out
    assert out.index("coordinator: SERVING") < out.index("envserver-0: SERVING") < out.index("learner-0: SERVING") \
        < out.index("actor-0: SERVING")
    # Each host holds the certificates and only its own roles' tokens; the CA key stays with the operator.
    remote = {n: tmp_path / "remote" / n for n in HOSTS}
    assert sorted(p.name for p in (remote["host-a"] / "pki" / "tokens").iterdir()) == \
        ["coordinator.tokens", "learner.tokens", "memory.tokens"]
    assert sorted(p.name for p in (remote["host-c"] / "pki" / "tokens").iterdir()) == ["actor.tokens"]
    assert not any((remote[n] / "pki" / "ca-key.pem").exists() for n in HOSTS)
    assert (remote["host-b"] / "atlasrl" / "envserver" / "server.py").is_file()   # the pushed copy runs there

    client = CoordinatorClient(f"{hosts.address('host-a')}:50050", timeout_s=3, channel_config=admin(inv))
    plain = CoordinatorClient(f"{hosts.address('host-a')}:50050", timeout_s=3, channel_config=ChannelConfig(security=SecurityConfig()))
    assert cluster(plain) is None   # no plaintext path into the run
    first = time.monotonic()
    wait(lambda: trained(client) >= 16, 300, "the learner trains on host-c's episodes")
    first_update_s = time.monotonic() - first

    st = deploy(inv, "status").stdout
    for name in ("coordinator", "memory", "learner-0", "envserver-0", "actor-0"):
        assert re.search(rf"{name} +active +restarts=0 +health=SERVING", st), st
    assert "actor" in st.split("coordinator ", 1)[1]   # the coordinator's own table lists the actor

    # --- partition host-c (the actor) for 20 s -------------------------------------------------------------------
    actor_pid = role_pid(remote["host-c"], "actor-0")
    before = trained(client)
    hosts.cut("host-c")
    t_cut = time.monotonic()
    time.sleep(PARTITION_S / 2)
    during = trained(client)
    time.sleep(max(0.0, PARTITION_S - (time.monotonic() - t_cut)))
    hosts.heal("host-c")
    t_heal = time.monotonic()
    at_heal = trained(client)
    wait(lambda: trained(client) > at_heal, 180, "training resumes on episodes from host-c after the partition", every=0.25)
    recovery_s = time.monotonic() - t_heal
    actor = wait(lambda: (m := member(cluster(client), pb.ROLE_ACTOR)) and m.last_heartbeat_age_s < 3 and m, 120,
                 "the actor heartbeats again")
    heartbeat_s = time.monotonic() - t_heal
    assert role_pid(remote["host-c"], "actor-0") == actor_pid, "the actor process was restarted"
    for n, names in (("host-a", ["coordinator", "memory", "learner-0"]), ("host-b", ["envserver-0"]), ("host-c", ["actor-0"])):
        for name in names:
            assert "restart #" not in (remote[n] / "logs" / f"{name}.log").read_text(), f"{name} restarted"
    more = trained(client)
    wait(lambda: trained(client) >= more + 16, 180, "two more updates after the recovery")

    # --- stop, accounting ----------------------------------------------------------------------------------------
    t_stop = time.monotonic()
    stop = deploy(inv, "stop").stdout
    stop_s = time.monotonic() - t_stop
    assert stop.index("stopped atlasrl-actor-0") < stop.index("stopped atlasrl-learner-0") < stop.index("stopped atlasrl-coordinator")
    for n in HOSTS:   # nothing of the run is left in any namespace, only the sshd
        procs = [int(p) for p in hosts.exec(n, "ip", "netns", "pids", hosts.ns[n]).stdout.split()]
        names = [Path(f"/proc/{p}/comm").read_text().strip() for p in procs if Path(f"/proc/{p}/comm").exists()]
        assert names == ["sshd"], f"{n}: {names}"
    for n, names in (("host-a", ["coordinator", "memory", "learner-0"]), ("host-b", ["envserver-0"]), ("host-c", ["actor-0"])):
        for name in names:   # every role exited 0 on SIGTERM: the loop logs a non-zero exit as 'exited with'
            assert "exited with" not in (remote[n] / "logs" / f"{name}.log").read_text(), name
    assert re.search(r"actor-0 +inactive", deploy(inv, "status", check=False).stdout)

    acc = deploy(inv, "accounting", check=False)
    assert acc.returncode == 0, acc.stdout + acc.stderr
    assert "balanced: generated = trained + refused + lost + waiting + unsent" in acc.stdout
    figures = json.loads((inv.parent / "state" / "accounting" / "accounting.json").read_text())
    assert figures["balanced"] and figures["trained"] >= 48 and figures["generated"] >= figures["trained"]
    assert figures["incarnations"] == {"actor-0": 1}   # one actor process the whole run
    report(test="three_hosts", deploy_up_s=round(deploy_s, 1), first_train_s=round(first_update_s, 1),
           partition_s=PARTITION_S, trained_before=before, trained_during_partition=during - before,
           recovery_to_training_s=round(recovery_s, 2), recovery_to_heartbeat_s=round(heartbeat_s, 2),
           actor_version=actor.policy_version, stop_s=round(stop_s, 1), accounting={k: figures[k] for k in (
               "generated", "trained", "refused", "lost", "waiting", "unsent")})


def test_learner_on_two_hosts_torchrun_rendezvous(hosts, model, tmp_path):
    """torchrun --nnodes 2: learner ranks on host-a and host-b meet at host-a's c10d rendezvous, train with gloo
    across the bridge and stop by themselves after max_updates; then deploy stops the rest."""
    gloo = {"env": {"GLOO_SOCKET_IFNAME": "eth0"}}
    roles = {
        "host-a": {"coordinator": {"port": 50150, "metrics_port": 9200},
                   "learner": {"port": 50152, "metrics_port": 9202, **gloo}},
        "host-b": {"envserver": {"port": 50160, "metrics_port": 9210}, "learner": {"port": 50152, "metrics_port": 9202, **gloo}},
        "host-c": {"actor": {"port": 50170, "metrics_port": 9220}},
    }
    inv = inventory(tmp_path, hosts, model, roles, learner={"max_updates": 3})
    plan = deploy(inv, "plan").stdout
    assert plan.count("--nnodes=2") == 2 and f"--rdzv-endpoint={hosts.address('host-a')}:29400" in plan
    t0 = time.monotonic()
    out = deploy(inv, "up", "--skip-prepare", timeout=600).stdout
    up_s = time.monotonic() - t0
    assert "[host-a] learner-0: SERVING" in out and "[host-b] learner-1: RUNNING" in out, out
    client = CoordinatorClient(f"{hosts.address('host-a')}:50150", timeout_s=3, channel_config=admin(inv))
    remote_a = tmp_path / "remote" / "host-a"

    loop_pid = int((remote_a / "deploy" / "atlasrl-learner-0.pid").read_text())
    wait(lambda: not Path(f"/proc/{loop_pid}").exists(), 300, "the two-node learner stops after its 3 updates")
    train_s = time.monotonic() - t0
    log_a = (remote_a / "logs" / "learner-0.log").read_text()
    log_b = (tmp_path / "remote" / "host-b" / "logs" / "learner-1.log").read_text()
    assert "world=2" in log_a, log_a[-3000:]
    assert "Traceback" not in log_a and "Traceback" not in log_b, log_a[-3000:] + log_b[-3000:]
    assert cluster(client).counters["learner.samples_trained"] == 3 * 8   # 3 updates of batch_episodes 8
    deploy(inv, "stop")
    for name, log in (("learner-0", log_a), ("learner-1", log_b)):
        assert "exited with" not in log, f"{name}: {log[-3000:]}"
    report(test="two_node_learner", deploy_up_s=round(up_s, 1), three_updates_s=round(train_s, 1))


def test_check_names_unreachable_host_missing_python_and_foreign_address(hosts, model, tmp_path):
    """`deploy check` (the first step of `up`) over ssh: each bad host is named, with the inventory key at fault."""
    roles = {"host-a": {"coordinator": {"port": 50250, "metrics_port": 9300}},
             "host-b": {"envserver": {"port": 50260, "metrics_port": 9310}},
             "host-c": {"actor": {"port": 50270, "metrics_port": 9320}}}
    path = inventory(tmp_path, hosts, model, roles)
    inv = yaml.safe_load(path.read_text())
    ghost = hosts.address("host-a").rsplit(".", 1)[0] + ".99"        # nobody on the bridge answers there
    inv["ssh_connect_timeout_s"] = 3
    inv["hosts"]["host-ghost"] = {"ssh": f"root@{ghost}", "address": ghost, "venv": sys.prefix,
                                  "roles": {"envserver": {"port": 50261, "metrics_port": 9311}}}
    inv["hosts"]["host-b"]["venv"] = "/nonexistent/venv"
    inv["hosts"]["host-c"]["address"] = hosts.address("host-a").rsplit(".", 1)[0] + ".77"   # not host-c's
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    t0 = time.monotonic()
    r = deploy(path, "check", check=False, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"host host-ghost is unreachable over ssh (root@{ghost}, port 22)" in r.stderr, r.stderr
    assert "host host-b: no usable Python: /nonexistent/venv/bin/python is missing there" in r.stderr, r.stderr
    assert re.search(r"inventory\.yaml:\d+: hosts\.host-c\.address: \S+\.77 is not an address of host host-c \(it has ", r.stderr)
    assert "[host-a] ok: Python 3." not in r.stderr and time.monotonic() - t0 < 60
