"""`atlasrl learner`: the FSDP learner (wraps torchrun on one host), and `atlasrl learner export`.

Its flags are derived from ``LearnerConfig`` (atlasrl/learner/config.py), the one definition of its settings;
the resolved config is written to ``<ckpt_dir>/learner-config.json``, which every rank reads.
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path

import typer

from atlasrl.cli.common import RoleOptions, role_options
from atlasrl.cli.from_model import config_options
from atlasrl.learner.config import LearnerConfig

learner_app = typer.Typer(help="FSDP learner: GRPO/PPO on streamed episodes, weights streamed to actors.", invoke_without_command=True)


@learner_app.callback()
@role_options(log_level=False)
@config_options(LearnerConfig)
def learner(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, help="Write the resolved config and print the torchrun command, run nothing."),
    *,
    cfg: LearnerConfig,
    opts: RoleOptions,
):
    """Run the learner: torchrun --standalone --nproc-per-node N -m atlasrl.learner.main."""
    if ctx.invoked_subcommand is not None:
        return
    if not cfg.model:
        raise typer.BadParameter("a model is required: --model DIR (or model: in --config)", param_hint="--model")
    if not (Path(cfg.model) / "config.json").exists():
        raise typer.BadParameter(f"{cfg.model} is not a Hugging Face model directory (no config.json)", param_hint="--model")

    # TLS/tokens: validated here; the torchrun ranks inherit them through the environment.
    opts.apply("learner", host=cfg.host)
    run_dir = Path(cfg.ckpt_dir) if cfg.ckpt_dir else Path(tempfile.mkdtemp(prefix="atlasrl-learner-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "learner-config.json"       # the resolved config, kept with the run
    cfg_path.write_text(cfg.model_dump_json(indent=2))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={cfg.nproc}",
           "-m", "atlasrl.learner.main", str(cfg_path)]
    if dry_run:
        typer.echo(" ".join(cmd))
        return
    env = dict(os.environ, ATLASRL_ROLE="learner")
    env.update(learner_gpu_env(cfg))
    if opts.insecure:
        env["ATLASRL_INSECURE"] = "1"
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // cfg.nproc)))
    raise typer.Exit(_run_torchrun(cmd, env))


def learner_gpu_env(cfg: LearnerConfig) -> dict[str, str]:
    """CUDA_VISIBLE_DEVICES for the ranks (learner.devices), checked against this host before torchrun starts:
    on a CUDA host every rank needs a GPU of its own (NCCL on cuda:LOCAL_RANK)."""
    from atlasrl.devices import describe_visible, gpu_env, visible_gpus

    env = gpu_env(cfg.devices) if cfg.devices else {}
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ.update(env)          # count what the ranks will see (torch is not imported yet in this process)
    try:
        gpus, where = visible_gpus(), describe_visible()
    finally:
        if env:
            if saved is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = saved
    if cfg.devices and not gpus:
        raise typer.BadParameter(f"learner.devices={','.join(cfg.devices)}: this host has no CUDA GPU (or torch has "
                                 "no CUDA)", param_hint="--devices")
    if gpus and cfg.nproc > gpus:
        raise typer.BadParameter(f"learner.nproc={cfg.nproc}: only {gpus} CUDA GPUs visible to the ranks ({where}); "
                                 "NCCL needs one GPU per rank", param_hint="--nproc")
    return env


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
