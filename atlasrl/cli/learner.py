"""`atlasrl learner`: the FSDP learner (wraps torchrun on one host), and `atlasrl learner export`."""
from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer

from atlasrl.cli.common import RoleOptions, role_options

learner_app = typer.Typer(help="FSDP learner: GRPO/PPO on streamed episodes, weights streamed to actors.", invoke_without_command=True)


@learner_app.callback()
@role_options(log_level=False, sessions=True)
def learner(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, help="HF model directory to train (e.g. from `atlasrl model tiny`)."),
    algo: str = typer.Option("grpo", help="grpo | gigpo | ppo"),
    host: str = typer.Option("127.0.0.1", help="Bind address of the Trajectory/Weight services (rank 0)."),
    port: int = typer.Option(50052, help="gRPC port (0 = any free port)."),
    metrics_port: Optional[int] = typer.Option(None, help="Prometheus /metrics port."),
    coordinator: Optional[str] = typer.Option(None, help="Coordinator address (host:port) to register with."),
    nproc: int = typer.Option(1, min=1, help="Processes (one per GPU; on CPU, gloo ranks)."),
    ckpt_dir: Optional[str] = typer.Option(None, help="Checkpoint directory; resumes from its latest checkpoint."),
    max_staleness: int = typer.Option(4, min=0, help="Versions of lag accepted for an episode."),
    stale_policy: str = typer.Option("drop", help="drop | downweight episodes over --max-staleness."),
    batch_episodes: int = typer.Option(8, min=1, help="Train once this many episodes (whole groups) arrived."),
    lr: float = typer.Option(1e-5, help="AdamW learning rate."),
    lr_final: Optional[float] = typer.Option(None, help="Learning rate reached after --lr-decay-updates, linearly (default: no decay)."),
    lr_decay_updates: int = typer.Option(1000, min=1, help="Updates over which the learning rate decays to --lr-final."),
    micro_batch_tokens: int = typer.Option(4096, help="Token budget of one micro-batch."),
    kl_coef: float = typer.Option(0.0, help="k3 KL to the initial policy (0 = no reference model)."),
    step_gamma: float = typer.Option(0.95, min=0.0, max=1.0, help="GiGPO: discount of the return-to-go compared in a step group."),
    entropy_coef: float = typer.Option(0.0, min=0.0, help="Entropy bonus (keeps exploring states where the policy would turn deterministic too early)."),
    entropy_coef_final: Optional[float] = typer.Option(None, min=0.0, help="Entropy bonus reached after --entropy-decay-updates, linearly (default: no decay)."),
    entropy_decay_updates: int = typer.Option(1000, min=1, help="Updates over which the entropy bonus decays to --entropy-coef-final."),
    activation_checkpointing: bool = typer.Option(False, help="Recompute decoder-layer activations in backward."),
    max_updates: Optional[int] = typer.Option(None, help="Stop after this many updates."),
    ready_file: Optional[str] = typer.Option(None, help="Write {port, metrics_port, version} JSON here once serving."),
    config: Optional[Path] = typer.Option(None, help="JSON file with more LearnerConfig fields (flags win)."),
    dry_run: bool = typer.Option(False, help="Write the resolved config and print the torchrun command, run nothing."),
    *,
    opts: RoleOptions,
):
    """Run the learner: torchrun --standalone --nproc-per-node N -m atlasrl.learner.main."""
    if ctx.invoked_subcommand is not None:
        return
    if model is None:
        raise typer.BadParameter("--model is required", param_hint="--model")
    if not (Path(model) / "config.json").exists():
        raise typer.BadParameter(f"{model} is not a Hugging Face model directory (no config.json)", param_hint="--model")
    from pydantic import ValidationError

    # TLS/tokens: validated here; the torchrun ranks inherit them through the environment.
    opts.apply("learner", host=host)

    from atlasrl.learner.config import LearnerConfig

    fields = json.loads(config.read_text()) if config else {}
    fields.update(model=model, algo=algo, host=host, port=port, metrics_port=metrics_port, coordinator=coordinator,
                  ckpt_dir=ckpt_dir, max_staleness=max_staleness, stale_policy=stale_policy, batch_episodes=batch_episodes,
                  lr=lr, lr_final=lr_final, lr_decay_updates=lr_decay_updates, micro_batch_tokens=micro_batch_tokens, kl_coef=kl_coef, entropy_coef=entropy_coef,
                  entropy_coef_final=entropy_coef_final, entropy_decay_updates=entropy_decay_updates, step_gamma=step_gamma, activation_checkpointing=activation_checkpointing,
                  max_updates=max_updates, ready_file=ready_file, **opts.session_limits())
    try:
        cfg = LearnerConfig(**fields)
    except ValidationError as e:
        raise typer.BadParameter(str(e)) from None
    run_dir = Path(ckpt_dir) if ckpt_dir else Path(tempfile.mkdtemp(prefix="atlasrl-learner-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "learner-config.json"       # the resolved config, kept with the run
    cfg_path.write_text(cfg.model_dump_json(indent=2))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "atlasrl.learner.main", str(cfg_path)]
    if dry_run:
        typer.echo(" ".join(cmd))
        return
    env = dict(os.environ, ATLASRL_ROLE="learner")
    if opts.insecure:
        env["ATLASRL_INSECURE"] = "1"
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    raise typer.Exit(_run_torchrun(cmd, env))


STOPPED_CODES = (0, 1, -signal.SIGINT, -signal.SIGABRT, -signal.SIGTERM)
"""torchrun's exit codes that mean "stopped as asked" once a stop signal was forwarded:
0, SignalException (1), killed by SIGINT/SIGTERM, or its agent's abort at exit (SIGABRT)."""


def _run_torchrun(cmd: list[str], env: dict[str, str]) -> int:
    """Run torchrun as a child, forwarding SIGTERM/SIGINT; a requested stop exits 0.

    torchrun answers a stop signal by stopping its ranks (they write a final
    checkpoint) and then raising SignalException, i.e. exit code 1: a supervisor
    (systemd Restart=on-failure, `atlasrl up`) would take a clean stop for a crash.
    Sometimes its agent then aborts on the way out, after the ranks are gone
    ("terminate called without an active exception", SIGABRT; seen in 1 of 4
    `up` stops here), so that counts as a requested stop too.
    """
    import subprocess

    stopping: list[int] = []
    early: list[int] = []        # signals that came before the child could be sent one
    child: subprocess.Popen | None = None

    def forward(signum, _frame):
        stopping.append(signum)
        if child is None:
            early.append(signum)
        else:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):   # before the child starts: no stop is missed
        signal.signal(sig, forward)
    from atlasrl.lifeline import lifeline_argv

    # Through the lifeline exec: torchrun gets SIGKILL if this process dies uncleanly (SIGKILL, crash);
    # its ranks in turn die with torchrun (atlasrl.learner.main arms the same signal).
    child = subprocess.Popen(lifeline_argv(os.getpid(), cmd), env=env)
    if early:
        child.send_signal(early[-1])
    code = child.wait()
    return 0 if stopping and code in STOPPED_CODES else code


@learner_app.command("export")
def export(
    ckpt: Path = typer.Option(..., help="Checkpoint root (latest step) or one step-* directory."),
    out: Path = typer.Option(..., help="Output HF model directory (loadable by the actor engines)."),
):
    """Write a checkpoint's policy as a Hugging Face model directory."""
    from atlasrl.learner.checkpoint import export as do_export

    try:
        version = do_export(ckpt, out)
    except FileNotFoundError as e:
        raise typer.BadParameter(str(e), param_hint="--ckpt") from None
    typer.echo(f"exported version {version} to {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(learner_app, name="learner")
