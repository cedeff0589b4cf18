"""`atlasrl actor ...` (the rollout actor role) and `atlasrl actor eval ...` (held-out seeds, no learner).

Flags are derived from ``ActorConfig`` / ``EvalConfig`` (atlasrl/actors/config.py), the one definition of
the actor's settings.
"""
from __future__ import annotations

import typer

from atlasrl.actors.config import ActorConfig, EvalConfig
from atlasrl.cli.common import RoleOptions, role_options
from atlasrl.cli.from_model import config_options

actor_app = typer.Typer(help="Rollout actor: drives env sessions, generates, streams episodes to the learner.")

NAMES = {"env_id": ("--env", "--env-id"), "max_buffered_episodes": ("--max-buffered-episodes", "--max-buffered"),
         "use_image": ("--image/--no-image",)}
@actor_app.callback(invoke_without_command=True)
@role_options()
@config_options(ActorConfig, names=NAMES)
def actor(
    ctx: typer.Context,
    max_episodes: int = typer.Option(None, help="Stop after this many episodes (default: run until stopped)."),
    *,
    cfg: ActorConfig,
    opts: RoleOptions,
):
    """Run a rollout actor against env servers and a learner."""
    if ctx.invoked_subcommand is not None:
        return
    import asyncio

    if cfg.nice:  # first, before any thread exists: Linux applies nice per thread, new threads inherit it
        from atlasrl.priority import lower_priority

        lower_priority(cfg.nice)   # and its autogroup's: `up` starts each role in its own session
    from atlasrl.rpc import ServerConfig

    opts.apply("actor", host=cfg.host)
    check_engine(cfg)
    from atlasrl.actors.actor import run_actor

    asyncio.run(run_actor(cfg, ServerConfig(host=cfg.host, port=cfg.port, metrics_port=cfg.metrics_port),
                          max_episodes=max_episodes))


def check_engine(cfg: ActorConfig) -> None:
    """The engine settings against this host, before anything starts: a bad one stops here naming its key."""
    from atlasrl.actors.config import engine_config
    from atlasrl.devices import apply_devices

    try:
        apply_devices(cfg.devices, "actor.devices")   # before torch looks at CUDA
        engine_config(cfg)
    except (ValueError, RuntimeError) as e:
        raise typer.BadParameter(str(e)) from None


@actor_app.command("eval")
@role_options()
@config_options(EvalConfig, names=NAMES)
def eval_cmd(*, cfg: EvalConfig, opts: RoleOptions):
    """Evaluate a model on held-out seeds (env's own success), with a Wilson confidence interval."""
    import asyncio

    opts.apply("actor")
    check_engine(cfg)
    if not cfg.envs:
        raise typer.BadParameter("envs is required (--envs HOST:PORT[,HOST:PORT])")
    report = asyncio.run(_eval(cfg))
    from atlasrl.actors.eval import report_json

    typer.echo(report.summary())
    typer.echo(report_json(report))


async def _eval(cfg: EvalConfig):
    import asyncio
    from pathlib import Path

    from atlasrl.actors.actor import build_engine
    from atlasrl.actors.config import resolve_images
    from atlasrl.actors.eval import evaluate
    from atlasrl.actors.policy import Policy
    from atlasrl.actors.rollout import env_clients

    actor = resolve_images(cfg.model_copy(update={"group_size": 1}))
    engine = await asyncio.to_thread(build_engine, actor)
    memory = None
    if actor.memory:   # the eval reads the memory's view and, with memory_ingest, feeds it its own episodes
        from atlasrl.actors.memory_hints import MemoryAdvisor

        memory = MemoryAdvisor.from_config(actor)
    try:
        return await evaluate(actor, Policy(engine, actor), env_clients(actor.envs), episodes=cfg.episodes,
                              seed_start=cfg.seed_start, jsonl=Path(cfg.out) if cfg.out else None,
                              confidence=cfg.confidence, memory=memory)
    finally:
        if memory is not None:
            await memory.flush(10)
            await memory.close()
        engine.close()


def register(app: typer.Typer) -> None:
    app.add_typer(actor_app, name="actor")
