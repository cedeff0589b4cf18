"""docker-free-deploy on this machine: three "hosts" (ssh: local, separate remote dirs), plain supervisor,
real role processes registering with a real coordinator; plus rendering of systemd units and multi-node torchrun."""
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docker-free-deploy"
sys.path.insert(0, str(DEPLOY))

from atlasdeploy.inventory import InventoryError, load_inventory
from atlasdeploy.render import host_script, processes, systemd_unit

from atlasrl.clients.coordinator import CoordinatorClient
from atlasrl.rpc.config import ChannelConfig, SecurityConfig
from atlasrl.v1 import coordinator_pb2 as pb


def consecutive_free_ports(n: int) -> list[int]:
    """n consecutive free loopback ports (role processes i use port + i)."""
    import random
    import socket

    for _ in range(100):
        base = random.randrange(20000, 60000)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return list(range(base, base + n))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


def deploy(inv: Path, *args: str, check: bool = True) -> str:
    state = ["--state-dir", str(inv.parent / "deploy-state")]
    r = subprocess.run([sys.executable, str(DEPLOY / "deploy.py"), str(inv), *args, *state], capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0 or not check, r.stdout + r.stderr
    return r.stdout


def write_inventory(tmp_path: Path, hosts: dict, **top) -> Path:
    inv = tmp_path / "inventory.yaml"
    inv.write_text(yaml.safe_dump({"name": "t", "remote_dir": str(tmp_path / "default"), **top, "hosts": hosts}))
    return inv


async def wait_for(pred, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await pred()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.3)


@pytest.mark.slow
async def test_three_local_hosts_start_restart_stop(tmp_path):
    ports = consecutive_free_ports(8)
    venv = str(Path(sys.executable).parent.parent)
    hosts = {
        "ctl": {"ssh": "local", "remote_dir": str(tmp_path / "ctl"), "venv": venv,
                "roles": {"coordinator": {"port": ports[0], "metrics_port": ports[1], "config": {"lease_ttl_s": 2.0}}}},
        "env-a": {"ssh": "local", "remote_dir": str(tmp_path / "env-a"), "venv": venv,
                  "roles": {"envserver": {"count": 2, "port": ports[2], "metrics_port": ports[4],
                                          "config": {"envs": ["frozenlake"], "workers": 0, "max_envs": 8}}}},
        "mem": {"ssh": "local", "remote_dir": str(tmp_path / "mem"), "venv": venv,
                "roles": {"memory": {"port": ports[6], "metrics_port": ports[7]}}},
    }
    inv = write_inventory(tmp_path, hosts, service_manager="plain")
    try:
        await _start_restart_stop(tmp_path, inv, hosts, ports)
    finally:   # a failed assertion leaves no role process behind
        deploy(inv, "stop", check=False)


async def _start_restart_stop(tmp_path: Path, inv: Path, hosts: dict, ports: list[int]) -> None:
    out = deploy(inv, "up")   # secure by default, on loopback too: mTLS + role tokens
    assert "[ctl] started atlasrl-coordinator (plain)" in out and "[env-a] started atlasrl-envserver-1 (plain)" in out
    assert "[env-a] envserver-1: SERVING" in out and "[mem] memory: SERVING" in out
    assert (tmp_path / "env-a" / "atlasrl" / "coordinator" / "service.py").is_file()  # the pushed copy is what runs
    assert sorted(p.name for p in (tmp_path / "env-a" / "pki" / "tokens").iterdir()) == ["envserver.tokens"]
    pki = tmp_path / "deploy-state" / "pki"
    with pytest.raises(Exception):  # noqa: B017 - plaintext is refused by a TLS server
        await CoordinatorClient(f"127.0.0.1:{ports[0]}", timeout_s=3, channel_config=ChannelConfig(security=SecurityConfig())).status()
    admin = ChannelConfig(security=SecurityConfig(tls_cert=pki / "client.pem", tls_key=pki / "client-key.pem",
                                                  tls_ca=pki / "ca.pem", token_file=pki / "tokens" / "admin.tokens"))
    client = CoordinatorClient(f"127.0.0.1:{ports[0]}", channel_config=admin)

    async def members():
        try:
            st = await client.status()
        except Exception:  # noqa: BLE001 - not answering yet
            return None
        roles = sorted(pb.Role.Name(m.role) for m in st.members)
        return st if roles == ["ROLE_ENVSERVER", "ROLE_ENVSERVER", "ROLE_MEMORY"] else None

    st = await wait_for(members)
    env_port = hosts["env-a"]["roles"]["envserver"]["port"]
    victim = next(m for m in st.members if m.address == f"127.0.0.1:{env_port}")

    # Kill the env server's process (not its supervisor): the plain loop restarts it, it registers again.
    loop_pid = int((tmp_path / "env-a" / "deploy" / "atlasrl-envserver-0.pid").read_text())
    child = psutil.Process(loop_pid).children()[0]
    os.kill(child.pid, signal.SIGKILL)

    async def replaced():
        st = await members()
        ids = {m.member_id for m in st.members if m.address == victim.address} if st else set()
        return ids and victim.member_id not in ids

    await wait_for(replaced)
    log = (tmp_path / "env-a" / "logs" / "envserver-0.log").read_text()
    assert "exited with 137; restart #1" in log
    assert re.search(r"env-a +envserver-0 +active +restarts=1 +health=SERVING", deploy(inv, "status"))

    # An env server restarted with another role's token: the coordinator refuses its Register, and status says so.
    tokens = tmp_path / "env-a" / "pki" / "tokens" / "envserver.tokens"
    tokens.write_text((pki / "tokens" / "actor.tokens").read_text())
    loop1 = int((tmp_path / "env-a" / "deploy" / "atlasrl-envserver-1.pid").read_text())
    os.kill(psutil.Process(loop1).children()[0].pid, signal.SIGKILL)

    async def refused():
        line = next((ln for ln in deploy(inv, "status", check=False).splitlines() if "envserver-1" in ln), "")
        return "PERMISSION_DENIED" in line and line

    line = await wait_for(refused)
    assert "may not register a member of role envserver" in (tmp_path / "env-a" / "logs" / "envserver-1.log").read_text(), line

    deploy(inv, "targets")
    targets = json.loads((DEPLOY / "targets" / "t.json").read_text())
    (DEPLOY / "targets" / "t.json").unlink()
    assert {t["labels"]["name"] for t in targets} == {"coordinator", "envserver-0", "envserver-1", "memory"}

    out = deploy(inv, "stop")
    assert out.index("atlasrl-memory") < out.index("atlasrl-coordinator")  # reverse start order
    assert not psutil.pid_exists(loop_pid) and not psutil.pid_exists(child.pid)
    assert re.search(r"ctl +coordinator +inactive", deploy(inv, "status", check=False))
    with pytest.raises(Exception):  # noqa: B017 - any failure: the coordinator is gone
        await client.status()


def test_systemd_unit_and_multinode_learner(tmp_path):
    hosts = {
        "ctl": {"ssh": "u@10.9.0.1", "address": "10.9.0.1", "roles": {"coordinator": {"port": 50050, "metrics_port": 9100}}},
        "gpu-0": {"ssh": "u@10.9.0.2", "address": "10.9.0.2",
                  "roles": {"learner": {"port": 50052, "metrics_port": 9102, "config": {"nproc": 8, "lr": 1e-6}}}},
        "gpu-1": {"ssh": "u@10.9.0.3", "address": "10.9.0.3",
                  "roles": {"learner": {"port": 50052, "metrics_port": 9102, "config": {"nproc": 8, "lr": 1e-6}}}},
    }
    inv = load_inventory(write_inventory(tmp_path, hosts, model="/models/m", config={"learner": {"algo": "grpo", "lr": 1e-5}}))
    procs = {p.name: p for p in processes(inv)}
    l0, l1 = procs["learner-0"], procs["learner-1"]
    for p in (l0, l1):
        argv = " ".join(p.argv)
        assert "--nnodes=2" in argv and "--nproc-per-node=8" in argv and "--rdzv-endpoint=10.9.0.2:29400" in argv
        assert "--rdzv-id=t" in argv and argv.endswith(f"-m atlasrl.learner.main {p.config_path}")
        learner = yaml.safe_load(p.config_text)   # inventory-wide settings < the host's < deploy's wiring
        assert (learner["algo"], learner["lr"], learner["nproc"], learner["model"]) == ("grpo", 1e-6, 8, "/models/m")
        assert learner["coordinator"] == "10.9.0.1:50050" and learner["host"] == "10.9.0.2"
    unit = systemd_unit(procs["coordinator"])
    assert "Restart=on-failure" in unit and "KillMode=control-group" in unit
    coord = procs["coordinator"]
    assert f"ExecStart={tmp_path / 'default'}/.venv/bin/python -m atlasrl.cli.main coordinator --config {coord.config_path}" in unit
    assert yaml.safe_load(coord.config_text)["server"] == {**yaml.safe_load(coord.config_text)["server"], "host": "10.9.0.1",
                                                           "port": 50050, "metrics_port": 9100}
    assert f"cat > {coord.config_path} <<'YAML'" in host_script(inv, "ctl", "start")


@pytest.mark.parametrize("change,words", [
    (lambda h: h["ctl"]["roles"].pop("coordinator") or h["ctl"]["roles"].update(memory={"port": 1, "metrics_port": 2}),
     "exactly one coordinator"),
    (lambda h: h["ctl"]["roles"]["coordinator"].update(port=0), "hosts.ctl.roles.coordinator.port"),
    (lambda h: h["ctl"]["roles"].update(memory={"port": 50050, "metrics_port": 9200}),
     "inventory.yaml:9: hosts.ctl.roles.memory.port: port 50050 is also used by hosts.ctl.roles.coordinator.port"),
    (lambda h: h["ctl"]["roles"].update(trainer={"port": 1, "metrics_port": 2}), "hosts.ctl.roles.trainer"),
    (lambda h: h["ctl"]["roles"]["coordinator"].update(config={"lease_ttl": 3}),
     "hosts.ctl.roles.coordinator.config.lease_ttl: Extra inputs are not permitted"),
    (lambda h: h["ctl"]["roles"]["coordinator"].update(config={"lease_ttl_s": -1}),
     "hosts.ctl.roles.coordinator.config.lease_ttl_s: Input should be greater than 0.1"),
])
def test_inventory_errors_name_the_key(tmp_path, change, words):
    hosts = {"ctl": {"roles": {"coordinator": {"port": 50050, "metrics_port": 9100}}}}
    change(hosts)
    with pytest.raises(InventoryError) as e:
        load_inventory(write_inventory(tmp_path, hosts))
    assert words in str(e.value)


def test_example_inventory_is_valid_and_plan_runs():
    out = subprocess.run([sys.executable, str(DEPLOY / "deploy.py"), str(DEPLOY / "inventory.example.yaml"), "plan"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("atlasrl-envserver-") == 4 and "nproc=8" in out.stdout and "lr=1e-06" in out.stdout


def test_example_inventory_starts_secure_as_written(tmp_path):
    """Every role of the example binds a non-loopback address: with the deploy's mTLS + token env the bind
    check passes (it refused all of them before); --insecure is the only plaintext path and plan says so in red."""
    from atlasrl.rpc.config import SecurityConfig
    from atlasrl.rpc.security import check_bind

    inv = load_inventory(DEPLOY / "inventory.example.yaml")
    procs = processes(inv)
    assert len(procs) == 9
    for p in procs:
        host = yaml.safe_load(p.config_text).get("host") or yaml.safe_load(p.config_text)["server"]["host"]
        assert host.startswith("10.0.0.")
        assert p.env["ATLASRL_MTLS"] == "1" and p.env["ATLASRL_TOKEN_FILE"].endswith(f"/pki/tokens/{p.role}.tokens")
        check_bind(host, SecurityConfig(), tls=bool(p.env.get("ATLASRL_TLS_CERT")), tokens=True)  # raises if refused
        with pytest.raises(Exception, match="refusing to serve on non-loopback"):
            check_bind(host, SecurityConfig(), tls=False, tokens=False)
    learner = yaml.safe_load(next(p for p in procs if p.role == "learner").config_text)
    assert learner["devices"] == [str(i) for i in range(8)] and learner["nproc"] == 8
    out = subprocess.run([sys.executable, str(DEPLOY / "deploy.py"), str(DEPLOY / "inventory.example.yaml"), "plan",
                          "--insecure", "--state-dir", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("\033[1;31m!!! INSECURE")
    assert out.stdout.count(" --insecure") == 9


@pytest.mark.parametrize("change,words", [
    (lambda h: h["gpu"]["roles"]["learner"].update(devices=[6, 8]),
     "hosts.gpu.roles.learner.devices: GPU [8] not on host gpu: it has GPUs 0-7"),
    (lambda h: h["ctl"]["roles"]["coordinator"].update(devices=[0]),
     "hosts.ctl.roles.coordinator.devices: GPU [0] not on host ctl: it has no GPUs"),
    (lambda h: h["gpu"]["roles"].update(actor={"port": 50070, "metrics_port": 9120, "devices": [1]}),
     "devices: GPU 1 is also given to hosts.gpu.roles."),
    (lambda h: h["gpu"]["roles"]["learner"].update(config={"nproc": 4}),
     "hosts.gpu.roles.learner.devices: 2 GPUs per learner but config nproc: 4"),
    (lambda h: h["gpu"].update(address="127.0.0.1"), "hosts.gpu.address: 127.0.0.1 is loopback"),
    (lambda h: h["gpu"].update(address="10.9.0.1"), "hosts.gpu.address: 10.9.0.1 is also hosts.ctl.address"),
    (lambda h: h["gpu"]["roles"].update(trainer={"port": 1, "metrics_port": 2}),
     "hosts.gpu.roles.trainer: Input should be 'coordinator', 'envserver', 'memory', 'learner' or 'actor'"),
    (lambda h: h["gpu"]["roles"]["learner"].update(metrics_port=50052),
     "hosts.gpu.roles.learner.metrics_port: port 50052 is also used by hosts.gpu.roles.learner.port on host gpu"),
])
def test_plan_refuses_bad_inventory_naming_key_and_line(tmp_path, change, words):
    hosts = {
        "ctl": {"ssh": "u@10.9.0.1", "address": "10.9.0.1", "roles": {"coordinator": {"port": 50050, "metrics_port": 9100}}},
        "gpu": {"ssh": "u@10.9.0.2", "address": "10.9.0.2", "gpus": 8,
                "roles": {"learner": {"port": 50052, "metrics_port": 9102, "devices": [0, 1]}}},
    }
    change(hosts)
    inv = write_inventory(tmp_path, hosts)
    out = subprocess.run([sys.executable, str(DEPLOY / "deploy.py"), str(inv), "plan"], capture_output=True, text=True)
    assert out.returncode == 2 and words in out.stderr, out.stderr
    line, key = re.search(r"inventory\.yaml:(\d+): (hosts\.gpu\.\S+|hosts\.ctl\.\S+):", out.stderr).groups()
    text = inv.read_text().splitlines()
    assert key.rstrip(":").split(".")[-1] in text[int(line) - 1], (line, key, text)   # the line holding the key


def test_slurm_batch_script_from_the_example_inventory(tmp_path):
    """`deploy.py slurm`: one het-job component per kind of host, one srun per role, the coordinator's address in
    the job's environment, PKI made by the job, torchrun over the learner nodes; the script parses (bash -n).
    Not submitted here: that needs a Slurm controller (see docs/deploy.md)."""
    out = tmp_path / "job.sbatch"
    r = subprocess.run([sys.executable, str(DEPLOY / "deploy.py"), str(DEPLOY / "inventory.example.yaml"), "slurm",
                        "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert subprocess.run(["bash", "-n", str(out)]).returncode == 0
    assert text.count("#SBATCH hetjob") == 3 and "--gres=gpu:8" in text
    assert [line.split("--het-group=")[1].split()[0] for line in text.splitlines() if "srun --het-group=" in line] == \
        ["0", "0", "2", "1", "3"]   # coordinator, memory, env servers, learner, actors
    assert 'export ATLASRL_COORDINATOR="${COORDINATOR_NODES%%,*}:50050"' in text
    assert "certs init" in text and "ATLASRL_MTLS=1" in text and "--insecure" not in text
    assert "--nnodes=1 --nproc-per-node=8" in text and "/opt/atlasrl/.venv/bin/python" in text
