"""`atlasrl actor ...` (the rollout actor role) and `atlasrl actor eval ...` (held-out seeds, no learner)."""
from __future__ import annotations

from pathlib import Path

import typer

from atlasrl.cli.common import RoleOptions, role_options

actor_app = typer.Typer(help="Rollout actor: drives env sessions, generates, streams episodes to the learner.")


def _config(**kw):
    from pydantic import ValidationError

    from atlasrl.actors.config import ActorConfig, parse_kv

    env_config = kw.pop("env_config")
    no_image = kw.pop("no_image")
    try:
        resolved = parse_kv(env_config) if env_config else None
        data = {k: v for k, v in kw.items() if v is not None}
        if resolved is not None:
            data["env_config"] = {**ActorConfig.model_fields["env_config"].default_factory(), **resolved}
        data["use_image"] = False if no_image else None  # None: images iff the model is vision-language
        return ActorConfig(**data)
    except (ValidationError, ValueError) as e:
        raise typer.BadParameter(str(e)) from None


ENVS = typer.Option(None, "--envs", help="Env server addresses, comma separated (host:port[,host:port]).")
MODEL = typer.Option(None, help="Local HF model directory (e.g. from `atlasrl model tiny --out DIR`).")
ENGINE = typer.Option("transformers", help="Generation engine: transformers (CPU) or vllm (GPU).")
ENV = typer.Option("frozenlake", "--env", help="Env id opened on every env server.")
ENV_CONFIG = typer.Option(None, "--env-config", help="Env setting key=value (repeatable), on top of text_mode=relative, max_actions_per_turn=1.")
ACTION_MODE = typer.Option("choice", help="choice: pick one valid action (tiny models); free: <think>..</think><answer>..</answer>.")
NO_IMAGE = typer.Option(False, "--no-image", help="Leave the rendered frame out of the prompt (default: in it for vision-language models only).")
BARE_PROMPT = typer.Option(False, "--bare-prompt", help="Empty system message (no role line, no instruction): for models trained from random weights.")


@actor_app.callback(invoke_without_command=True)
@role_options()
def actor(
    ctx: typer.Context,
    envs: str = ENVS,
    learner: str = typer.Option(None, help="Learner address (TrajectoryService + WeightService)."),
    memory: str = typer.Option(None, help="Memory service address (hints, shaping, ingest); omit to run without memory."),
    model: str = MODEL,
    engine: str = ENGINE,
    num_envs: int = typer.Option(8, help="Env sessions driven concurrently; generation is batched across them."),
    group_size: int = typer.Option(4, help="GRPO group size: episodes sharing one env seed."),
    action_mode: str = ACTION_MODE,
    env: str = ENV,
    env_config: list[str] = ENV_CONFIG,
    no_image: bool = NO_IMAGE,
    bare_prompt: bool = BARE_PROMPT,
    temperature: float = typer.Option(1.0, help="Sampling temperature."),
    context_turns: int = typer.Option(0, help="Earlier turns (observation + action) kept in the prompt."),
    memory_hints: str = typer.Option("text", help="Memory hints in the prompt: none, text, overlay, both."),
    memory_shaping: bool = typer.Option(True, "--memory-shaping/--no-memory-shaping",
                                        help="Add the memory's potential-based shaping to each turn's reward."),
    max_buffered: int = typer.Option(256, help="Unacked episodes kept for the learner before generation pauses."),
    max_learner_backlog: int = typer.Option(32, help="Start no new GRPO group while this many episodes are untrained: "
                                            "in the learner's buffer, unsent or being played (0 = never wait)."),
    seed_start: int = typer.Option(0, help="First training env seed."),
    actor_id: str = typer.Option(None, help="Actor id (default: random; keep it stable across restarts with --spool-dir)."),
    spool_dir: str = typer.Option(None, help="Episode spool directory: <DIR>/<actor-id>.sqlite records every episode's "
                                  "outcome (acked, refused, lost) across restarts (omit: counts in memory only, "
                                  "a killed actor's unacked episodes are unaccounted)."),
    spool: bool = typer.Option(True, "--spool/--no-spool", help="With --spool-dir: keep unacked episodes and re-send "
                               "them after a restart (--no-spool: ids only, unacked ones are counted lost)."),
    max_episodes: int = typer.Option(None, help="Stop after this many episodes (default: run until stopped)."),
    host: str = typer.Option("127.0.0.1", help="Bind address of the actor's health endpoint."),
    port: int = typer.Option(0, help="gRPC port of the health endpoint (0 = any free port)."),
    metrics_port: int = typer.Option(None, help="Prometheus /metrics port (omit to disable)."),
    coordinator: str = typer.Option(None, help="Coordinator address: register, heartbeat, follow run state and assignments."),
    *,
    opts: RoleOptions,
):
    """Run a rollout actor against env servers and a learner."""
    if ctx.invoked_subcommand is not None:
        return
    import asyncio

    from atlasrl.rpc import ServerConfig

    opts.apply("actor", host=host)
    cfg = _config(envs=envs, learner=learner, memory=memory, model=model, engine=engine, num_envs=num_envs,
                  group_size=group_size, action_mode=action_mode, env_id=env, env_config=env_config, no_image=no_image,
                  bare_prompt=bare_prompt, temperature=temperature, context_turns=context_turns, memory_hints=memory_hints,
                  memory_shaping=memory_shaping, max_buffered_episodes=max_buffered, seed_start=seed_start,
                  max_learner_backlog=max_learner_backlog, actor_id=actor_id, coordinator=coordinator,
                  spool_dir=spool_dir, spool=spool)
    from atlasrl.actors.actor import run_actor

    asyncio.run(run_actor(cfg, ServerConfig(host=host, port=port, metrics_port=metrics_port), max_episodes=max_episodes))


@actor_app.command("eval")
@role_options()
def eval_cmd(
    envs: str = ENVS,
    model: str = MODEL,
    engine: str = ENGINE,
    episodes: int = typer.Option(100, help="Held-out episodes: seeds seed_start .. seed_start + episodes - 1."),
    seed_start: int = typer.Option(1_000_000, help="First held-out seed (keep it away from training seeds)."),
    num_envs: int = typer.Option(16, help="Env sessions played concurrently."),
    action_mode: str = ACTION_MODE,
    env: str = ENV,
    env_config: list[str] = ENV_CONFIG,
    no_image: bool = NO_IMAGE,
    bare_prompt: bool = BARE_PROMPT,
    temperature: float = typer.Option(0.0, help="Sampling temperature (0 = greedy)."),
    context_turns: int = typer.Option(0, help="Earlier turns (observation + action) kept in the prompt."),
    confidence: float = typer.Option(0.95, help="Confidence level of the Wilson interval."),
    out: Path = typer.Option(None, help="Write one JSON line per episode here."),
    *,
    opts: RoleOptions,
):
    """Evaluate a model on held-out seeds (env's own success), with a Wilson confidence interval."""
    import asyncio

    opts.apply("actor")
    cfg = _config(envs=envs, model=model, engine=engine, num_envs=num_envs, action_mode=action_mode, env_id=env,
                  env_config=env_config, no_image=no_image, bare_prompt=bare_prompt, temperature=temperature,
                  context_turns=context_turns,
                  actor_id=None, group_size=1, seed_start=seed_start)
    if not cfg.envs:
        raise typer.BadParameter("--envs is required")
    report = asyncio.run(_eval(cfg, episodes, seed_start, out, confidence))
    from atlasrl.actors.eval import report_json

    typer.echo(report.summary())
    typer.echo(report_json(report))


async def _eval(cfg, episodes, seed_start, out, confidence):
    import asyncio

    from atlasrl.actors.actor import build_engine
    from atlasrl.actors.config import resolve_images
    from atlasrl.actors.eval import evaluate
    from atlasrl.actors.policy import Policy
    from atlasrl.actors.rollout import env_clients

    cfg = resolve_images(cfg)
    engine = await asyncio.to_thread(build_engine, cfg)
    try:
        return await evaluate(cfg, Policy(engine, cfg), env_clients(cfg.envs), episodes=episodes, seed_start=seed_start, jsonl=out,
                              confidence=confidence)
    finally:
        engine.close()


def register(app: typer.Typer) -> None:
    app.add_typer(actor_app, name="actor")
