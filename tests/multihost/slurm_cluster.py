"""A one-node Slurm cluster on this machine: munged, slurmctld and slurmd (Debian's slurm-wlm) with their own
configuration, key, sockets, state and logs under one directory.

    with SlurmCluster(workdir) as slurm:
        job = slurm.sbatch(script_path)          # sbatch --parsable, SLURM_CONF pointing at this cluster
        slurm.wait_job(job, timeout=240)         # -> final state (COMPLETED, FAILED, ...), from the jobcomp file
        slurm.env                                # environment for sbatch/squeue/scontrol by hand

Slurm's backfill scheduler (the only one that starts heterogeneous jobs) plans whole nodes, so the components
of a het job never share a node: the cluster has ``nodes`` Slurm nodes on this one machine, ``n1``..``nN``, one
slurmd each, each on its own loopback address (``NodeAddr=127.0.0.<i>``, ``CommunicationParameters=NoInAddrAny``:
every daemon binds its own address, so all slurmds share one port), each declaring more CPUs than the machine
has (``SlurmdParameters=config_overrides``). No accounting
daemon: a job's final state is read from the ``jobcomp/filetxt`` file. The daemons run as root
(``SlurmUser``/``SlurmdUser``) on free loopback ports; munged listens on a socket of its own (``AuthInfo``), so
a munged or Slurm already on the machine is left alone. ``close`` (also on ``__exit__`` and at interpreter
exit) cancels the jobs, stops the three daemons (SIGTERM, then SIGKILL), kills any process still in a job
step and removes the directory.
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = {"munged": "/usr/sbin/munged", "slurmctld": "/usr/sbin/slurmctld", "slurmd": "/usr/sbin/slurmd"}


def available() -> str | None:
    """Why a Slurm cluster cannot be started here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (slurmd runs job steps as the submitting user; SlurmdUser=root)"
    for name, path in DAEMONS.items():
        if not Path(path).is_file():
            return f"{name} not installed (scripts/install-slurm.sh)"
    for tool in ("sbatch", "scontrol", "squeue", "scancel"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (scripts/install-slurm.sh)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    def __init__(self, workdir: Path, nodes: int = 4, cpus: int = 8, memory_mb: int = 4000, max_time_min: int = 10):
        self.dir = Path(workdir)
        self.nodes = {f"n{i}": f"127.0.0.{i}" for i in range(1, nodes + 1)}
        self.ports = {n: free_port() for n in self.nodes}
        self.cpus, self.memory_mb, self.max_time_min = cpus, memory_mb, max_time_min
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = self.dir / "slurm.conf"
        self.jobcomp = self.dir / "jobcomp.txt"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.jobs: list[str] = []

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def __enter__(self) -> SlurmCluster:
        atexit.register(self.close)
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, timeout: float = 60) -> None:
        d = self.dir
        for sub in ("munge", "state", *(f"spool/{n}" for n in self.nodes)):
            (d / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(d / "munge", 0o700)
        key = d / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        self.socket = d / "munge" / "munge.socket"
        self._spawn("munged", [DAEMONS["munged"], "-F", "--force", f"--key-file={key}", f"--socket={self.socket}",
                               f"--pid-file={d / 'munge' / 'munged.pid'}", f"--log-file={d / 'munged.log'}",
                               f"--seed-file={d / 'munge' / 'munged.seed'}"])
        self._wait(lambda: self.socket.exists(), 15, "munged's socket")
        self.conf.write_text(self.slurm_conf())
        self._spawn("slurmctld", [DAEMONS["slurmctld"], "-D", "-i", "-f", str(self.conf)])
        for node in self.nodes:
            self._spawn(f"slurmd-{node}", [DAEMONS["slurmd"], "-D", "-N", node, "-f", str(self.conf)])
        self._wait(self._idle, timeout, f"nodes {', '.join(self.nodes)} idle in slurmctld")

    def slurm_conf(self) -> str:
        d = self.dir
        return "\n".join([
            f"ClusterName=atlasrl{os.getpid()}",
            "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={self.socket}",
            f"StateSaveLocation={d / 'state'}", f"SlurmdSpoolDir={d / 'spool'}/%n",
            f"SlurmctldPidFile={d / 'slurmctld.pid'}", f"SlurmdPidFile={d / 'slurmd-%n.pid'}",
            f"SlurmctldLogFile={d / 'slurmctld.log'}", f"SlurmdLogFile={d / 'slurmd-%n.log'}",
            "SlurmctldDebug=info", "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none", "SwitchType=switch/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU_Memory", "DefMemPerCPU=100",
            "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/filetxt", f"JobCompLoc={self.jobcomp}",
            "SlurmdParameters=config_overrides", "ReturnToService=2", "MinJobAge=600",
            "SchedulerType=sched/backfill", "SchedulerParameters=bf_interval=1,sched_interval=2", "KillWait=10",
            *(f"NodeName={n} NodeHostname=localhost NodeAddr={a} Port={self.ports[n]} CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN"
              for n, a in self.nodes.items()),
            f"PartitionName=atlas Nodes={','.join(self.nodes)} Default=YES MaxTime={self.max_time_min} State=UP",
            "",
        ])

    def close(self) -> None:
        for job in self.jobs:
            if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
                try:
                    subprocess.run(["scancel", job], env=self.env, capture_output=True, timeout=15, check=False)
                except subprocess.TimeoutExpired:
                    pass
        self.jobs.clear()
        for name in [*(f"slurmd-{n}" for n in self.nodes), "slurmctld", "munged"]:
            p = self.procs.pop(name, None)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for pid in self.step_pids():   # slurmstepd and the job's processes, should any outlive slurmd
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def step_pids(self) -> list[int]:
        """Processes other than the daemons whose environment names this cluster's configuration: slurmstepd and
        every process of a job (they inherit SLURM_CONF from sbatch's environment)."""
        mark = f"SLURM_CONF={self.conf}".encode()
        daemons = {p.pid for p in self.procs.values()}
        pids = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit() or int(p.name) == os.getpid() or int(p.name) in daemons:
                continue
            try:
                env = (p / "environ").read_bytes().split(b"\0")
                job = any(v.startswith(b"SLURM_JOB_ID=") for v in env) or (p / "comm").read_text().strip() == "slurmstepd"
                if mark in env and job:
                    pids.append(int(p.name))
            except OSError:
                continue
        return pids

    # --- jobs --------------------------------------------------------------------------------------------------
    def run(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)

    def sbatch(self, script: Path, *opts: str, cwd: Path | None = None) -> str:
        r = subprocess.run(["sbatch", "--parsable", *opts, str(script)], env=self.env, cwd=cwd, capture_output=True,
                           text=True, timeout=30, check=False)
        assert r.returncode == 0, f"sbatch failed ({r.returncode}): {r.stderr}\n{self.logs()}"
        job = r.stdout.strip().split(";")[0]
        self.jobs.append(job)
        return job

    def final_state(self, job: str) -> str | None:
        """The job's state from the jobcomp file once it ended (a het job: its leader's record), else None."""
        if not self.jobcomp.exists():
            return None
        for line in self.jobcomp.read_text().splitlines():
            if re.search(rf"\bJobId={job}\b", line):
                m = re.search(r"\bJobState=(\S+)", line)
                return m.group(1) if m else "?"
        return None

    def wait_job(self, job: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.final_state(job)
            if state and not self.run("squeue", "-h", "-j", job).stdout.strip():
                return state
            time.sleep(1)
        raise AssertionError(f"job {job} not finished within {timeout:.0f}s:\n"
                             f"{self.run('scontrol', 'show', 'job', job).stdout}\n{self.logs()}")

    def logs(self, tail: int = 40) -> str:
        out = []
        for name in ["slurmctld", *(f"slurmd-{n}" for n in self.nodes), "munged"]:
            f = self.dir / f"{name}.log"
            if f.exists():
                out.append(f"--- {name}.log\n" + "\n".join(f.read_text(errors="replace").splitlines()[-tail:]))
        return "\n".join(out)

    def wait_no_steps(self, timeout: float) -> list[str]:
        """Wait until no process of a job is left; returns the command lines of those still there at the deadline."""
        deadline = time.monotonic() + timeout
        while (pids := self.step_pids()) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = []
        for pid in pids:
            try:
                left.append(f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200])
            except OSError:
                continue
        return left

    # --- internals ---------------------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.dir / f"{name}.stderr", "wb")   # noqa: SIM115 - owned by the process for its lifetime
        self.procs[name] = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def _idle(self) -> bool:
        for name, p in self.procs.items():
            if p.poll() is not None:
                err = (self.dir / f"{name}.stderr").read_text(errors="replace")
                raise AssertionError(f"{name} exited with {p.returncode}: {err}\n{self.logs()}")
        r = self.run("sinfo", "-h", "-N", "-o", "%T")
        return r.returncode == 0 and [s.rstrip("*") for s in r.stdout.split()] == ["idle"] * len(self.nodes)

    def _wait(self, pred, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:.0f}s\n{self.logs()}")
            time.sleep(0.3)
