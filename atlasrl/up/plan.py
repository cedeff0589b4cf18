"""Turn a RunConfig into the role processes `atlasrl up` starts, with their command lines and ports.

Roles meet only through their CLIs and gRPC: this module knows each role's
documented flags, nothing of its internals. A role whose CLI module is not
installed yet is left out with a note (the run goes on with what exists).
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field

from atlasrl.config import RunConfig
from atlasrl.config.schema import ACTOR_SEED_STRIDE, TRAIN_SEED_BLOCK
from atlasrl.learner.config import shaping_discount
from atlasrl.up.ports import free_ports, ports_for
from atlasrl.up.rundir import RunDir
from atlasrl.up.security import RunSecurity
from atlasrl.up.supervisor import RoleProcess

HOST = "127.0.0.1"


def atlasrl_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "atlasrl.up.launch", *args]


def env_config_flags(cfg: RunConfig) -> list[str]:
    return [a for k, v in cfg.envserver.env_config.items() for a in ("--env-config", f"{k}={v}")]


def prompt_flags(cfg: RunConfig) -> list[str]:
    """Prompt options shared by the training actors and the held-out eval (both must build the same prompts)."""
    return ["--action-mode", cfg.actor.action_mode, "--context-turns", str(cfg.actor.context_turns),
            *(["--bare-prompt"] if cfg.bare_prompt() else [])]


def decay_flags(c: RunConfig) -> list[str]:
    """The learner's linear schedules (learning rate, entropy bonus), where the config sets an end value."""
    out = []
    if c.learner.lr_final is not None:
        out += ["--lr-final", str(c.learner.lr_final), "--lr-decay-updates", str(c.learner.lr_decay_updates)]
    if c.learner.entropy_coef_final is not None:
        out += ["--entropy-coef-final", str(c.learner.entropy_coef_final), "--entropy-decay-updates", str(c.learner.entropy_decay_updates)]
    return out


def role_available(role: str) -> bool:
    return importlib.util.find_spec(f"atlasrl.cli.{role}") is not None


@dataclass
class Plan:
    coordinator: RoleProcess
    stages: list[list[RoleProcess]]            # started stage by stage; processes in a stage need the previous ones
    metrics_targets: dict[str, str] = field(default_factory=dict)  # name -> host:port of /metrics
    skipped: list[str] = field(default_factory=list)
    coordinator_address: str = ""
    learner_address: str = ""
    memory_address: str = ""
    envserver_addresses: list[str] = field(default_factory=list)

    def all(self) -> list[RoleProcess]:
        return [self.coordinator] + [p for stage in self.stages for p in stage]


def build_plan(cfg: RunConfig, rd: RunDir, model_dir: str, security: RunSecurity | None = None) -> Plan:
    c = cfg

    def sec(role: str) -> list[str]:  # run.secure: TLS + mTLS + this role's token file
        return security.role_flags(role) if security else []

    pool = free_ports(2 * (4 + c.envserver.count + c.actor.count))
    coord_port = ports_for(c.coordinator.port, 1, pool)[0]
    coord_addr = f"{HOST}:{coord_port}"
    level_env: dict[str, str] = {"ATLASRL_LOG_LEVEL": c.run.log_level}
    light_env = {**level_env, "OMP_NUM_THREADS": "1"}  # roles without heavy maths leave the cores to torch
    metrics: dict[str, str] = {}

    def with_metrics(name: str, first: int, i: int) -> list[str]:
        port = ports_for(first, i + 1, pool)[i] if first else pool.pop()
        metrics[name] = f"{HOST}:{port}"
        return ["--metrics-port", str(port)]

    coordinator = RoleProcess("coordinator", "coordinator", atlasrl_cmd(
        "coordinator", "--host", HOST, "--port", str(coord_port), *with_metrics("coordinator", c.coordinator.metrics_port, 0),
        "--state-dir", str(rd.coordinator_state), "--lease-ttl-s", str(c.coordinator.lease_ttl_s),
        "--max-staleness", str(c.coordinator.max_staleness), "--history-interval-s", str(c.coordinator.history_interval_s),
        "--reopen-stopped",   # resuming a run directory is a new launch: the last one ended STOPPING
        *sec("coordinator")),
        port=coord_port, env=light_env)
    plan = Plan(coordinator, [], metrics, coordinator_address=coord_addr)
    join = ["--coordinator", coord_addr]

    first_stage: list[RoleProcess] = []
    if role_available("envserver"):
        for i, port in enumerate(ports_for(c.envserver.port, c.envserver.count, pool)):
            name = f"envserver-{i}"
            first_stage.append(RoleProcess(name, "envserver", atlasrl_cmd(
                "envserver", "--env", c.envserver.env, "--host", HOST, "--port", str(port),
                *with_metrics(name, c.envserver.metrics_port, i), "--workers", str(c.envserver.workers),
                "--max-envs", str(c.envserver.max_envs), *join, *sec("envserver"),
                *c.envserver.args), port=port, env=light_env))
            plan.envserver_addresses.append(f"{HOST}:{port}")
    else:
        plan.skipped.append("envserver")
    if c.memory.enabled and role_available("memory"):
        port = ports_for(c.memory.port, 1, pool)[0]
        first_stage.append(RoleProcess("memory", "memory", atlasrl_cmd(
            "memory", "--host", HOST, "--port", str(port), *with_metrics("memory", c.memory.metrics_port, 0),
            "--data-dir", str(rd.memory_data), "--gamma", str(shaping_discount(c.learner.algo, c.learner.step_gamma)),
            *join, *sec("memory"), *c.memory.args), port=port, env=light_env))
        plan.memory_address = f"{HOST}:{port}"
    elif c.memory.enabled:
        plan.skipped.append("memory")
    if role_available("learner"):
        port = ports_for(c.learner.port, 1, pool)[0]
        first_stage.append(RoleProcess("learner", "learner", atlasrl_cmd(
            "learner", "--model", model_dir, "--algo", c.learner.algo, "--host", HOST, "--port", str(port),
            *with_metrics("learner", c.learner.metrics_port, 0), "--nproc", str(c.learner.nproc),
            "--ckpt-dir", str(rd.checkpoints), "--max-staleness", str(c.coordinator.max_staleness), "--lr", str(c.learner.lr),
            "--batch-episodes", str(c.learner.batch_episodes),
            "--entropy-coef", str(c.learner.entropy_coef), *decay_flags(c), "--step-gamma", str(c.learner.step_gamma), *join, *sec("learner"), *c.learner.args),
            port=port, env=level_env,
            stop_timeout_s=3 * c.run.stop_timeout_s))  # it writes a final checkpoint on SIGTERM
        plan.learner_address = f"{HOST}:{port}"
    else:
        plan.skipped.append("learner")
    plan.stages.append(first_stage)

    actors: list[RoleProcess] = []
    if role_available("actor") and plan.envserver_addresses:
        for i, port in enumerate(ports_for(c.actor.port, c.actor.count, pool)):
            name = f"actor-{i}"
            argv = atlasrl_cmd(
                "actor", "--envs", ",".join(plan.envserver_addresses), "--model", model_dir,
                "--engine", c.actor.engine, "--num-envs", str(c.actor.num_envs), "--group-size", str(c.actor.group_size),
                "--max-learner-backlog", str(c.max_learner_backlog()), *prompt_flags(c), "--memory-hints", c.actor.memory_hints,
                "--env", c.envserver.env, *env_config_flags(c),
                "--seed-start", str(c.run.seed * TRAIN_SEED_BLOCK + i * ACTOR_SEED_STRIDE), "--actor-id", name,
                "--spool-dir", str(rd.root / "spool"), "--spool" if c.actor.spool else "--no-spool",
                "--host", HOST, "--port", str(port), *with_metrics(name, c.actor.metrics_port, i), *join, *sec("actor"),
                *c.actor.args)
            if plan.learner_address:
                argv += ["--learner", plan.learner_address]
            if plan.memory_address:
                argv += ["--memory", plan.memory_address, "--memory-shaping" if c.memory.shaping else "--no-memory-shaping"]
            actors.append(RoleProcess(name, "actor", argv, port=port, env=level_env, nice=c.actor.nice))
    else:
        plan.skipped.append("actor")
    plan.stages.append(actors)
    return plan
