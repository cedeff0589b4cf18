"""Hosts on one machine: Linux network namespaces on a private bridge, each with its own OpenSSH server.

    with NamespaceHosts(["host-a", "host-b", "host-c"], workdir) as hosts:
        hosts.address("host-a")        # 10.<x>.<y>.11, on the bridge; the test process (root namespace) is .1
        hosts.ssh_config               # ssh -F file: `ssh -F ... host-a` logs in as root over the bridge
        hosts.cut("host-c"); hosts.heal("host-c")   # link down / up inside host-c's namespace

Every name carries this process's id (``atlmh<pid>-a``, bridge ``atb<pid>``), so concurrent runs do not meet,
and namespaces of a run that died (its pid gone) are removed at the next start. Teardown kills every process
left in the namespaces (the role processes deploy started there, the sshds), then deletes the namespaces,
the veths and the bridge: in ``__exit__`` and, should the interpreter exit first, in an atexit hook.
Traffic stays on the bridge (no route out, no NAT), so the run is confined to 127.0.0.1 and these addresses.
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

PREFIX = "atlmh"


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


def available() -> str | None:
    """Why namespace hosts cannot be built here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    for tool in ("ip", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if not Path("/usr/sbin/sshd").is_file():
        return "openssh-server not installed (scripts/install-sshd.sh)"
    return None


def remove_stale() -> None:
    """Namespaces and bridges of earlier runs whose process is gone (a SIGKILLed test)."""
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        m = re.match(rf"({PREFIX}(\d+)-\w+)", line)
        if m and not _alive(int(m.group(2))):
            _kill_ns(m.group(1))
            sh("ip", "netns", "del", m.group(1), check=False)
    for line in sh("ip", "-o", "link", "show", "type", "bridge", check=False).stdout.splitlines():
        m = re.search(r"\d+: (atb(\d+))[:@]", line)
        if m and not _alive(int(m.group(2))):
            sh("ip", "link", "del", m.group(1), check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _kill_ns(ns: str) -> None:
    """SIGKILL every process in the namespace, up to 3 rounds (a supervisor loop may fork while we kill)."""
    for _ in range(3):
        pids = [int(p) for p in sh("ip", "netns", "pids", ns, check=False).stdout.split()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


class NamespaceHosts:
    def __init__(self, names: list[str], workdir: Path):
        self.names = names
        self.workdir = Path(workdir)
        pid = os.getpid()
        self.bridge = f"atb{pid}"
        self.subnet = f"10.{200 + pid % 50}.{(pid // 50) % 250}"
        self.ns = {n: f"{PREFIX}{pid}-{chr(ord('a') + i)}" for i, n in enumerate(names)}
        self.veth = {n: f"atv{pid}{chr(ord('a') + i)}" for i, n in enumerate(names)}
        self.ssh_config = self.workdir / "ssh_config"
        self._sshd: dict[str, subprocess.Popen] = {}
        self._closed = False

    def address(self, name: str) -> str:
        return f"{self.subnet}.{11 + self.names.index(name)}"

    def exec(self, name: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.ns[name], *argv, check=check)

    def __enter__(self) -> NamespaceHosts:
        remove_stale()
        atexit.register(self.close)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _build(self) -> None:
        w = self.workdir
        w.mkdir(parents=True, exist_ok=True)
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(w / "id_ed25519"))
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(w / "host_key"))
        shutil.copy(w / "id_ed25519.pub", w / "authorized_keys")
        Path("/run/sshd").mkdir(exist_ok=True)   # sshd's privilege-separation directory
        ssh_cfg = []
        for name in self.names:
            ns, veth, addr = self.ns[name], self.veth[name], self.address(name)
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", veth, "master", self.bridge, "up")
            self.exec(name, "ip", "addr", "add", f"{addr}/24", "dev", "eth0")
            self.exec(name, "ip", "link", "set", "eth0", "up")
            self.exec(name, "ip", "link", "set", "lo", "up")
            conf = w / f"sshd_{name}.conf"
            conf.write_text(f"ListenAddress {addr}\nPort 22\nHostKey {w / 'host_key'}\nAuthorizedKeysFile {w / 'authorized_keys'}\n"
                            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                            "UsePAM no\nStrictModes no\nLogLevel ERROR\nMaxStartups 50\nMaxSessions 50\n"
                            f"PidFile {w / f'sshd_{name}.pid'}\n")
            with open(w / f"sshd_{name}.log", "w") as log:   # the child keeps its own descriptor
                self._sshd[name] = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/sbin/sshd", "-D", "-e", "-f", str(conf)],
                                                    stdout=subprocess.DEVNULL, stderr=log)
            ssh_cfg.append(f"Host {name}\n  HostName {addr}\n  User root\n  IdentityFile {w / 'id_ed25519'}\n"
                           "  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n")
        self.ssh_config.write_text("".join(ssh_cfg))
        deadline = time.monotonic() + 30
        for name in self.names:
            while True:
                r = sh("ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", name, "true",
                       check=False)
                if r.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd in {self.ns[name]} not answering: {r.stderr.strip()}; "
                                       f"log: {(w / f'sshd_{name}.log').read_text()}")
                time.sleep(0.2)

    def cut(self, name: str) -> None:
        """Partition the host: its only link goes down (its peers' packets to it are dropped meanwhile)."""
        self.exec(name, "ip", "link", "set", "eth0", "down")

    def heal(self, name: str) -> None:
        self.exec(name, "ip", "link", "set", "eth0", "up")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for name in self.names:
            _kill_ns(self.ns[name])   # role processes, supervisor loops, sshd
            sh("ip", "netns", "del", self.ns[name], check=False)
            sh("ip", "link", "del", self.veth[name], check=False)
        for p in self._sshd.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        sh("ip", "link", "del", self.bridge, check=False)
        try:
            atexit.unregister(self.close)
        except Exception:  # noqa: BLE001 - interpreter shutting down
            pass
