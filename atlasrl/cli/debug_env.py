"""`atlasrl debug envs` / `atlasrl debug env`: look at a live env server.

    atlasrl debug envs --addr 127.0.0.1:50051
    atlasrl debug env --addr 127.0.0.1:50051 --env frozenlake --seed 3 --actions "Right,Down,Down" --save-frames out/
    atlasrl debug env --addr 127.0.0.1:50051 --env sokoban --steps 20 --config size=8 --config num_boxes=2

``--actions`` is split on commas, one action per turn (quote a turn holding
several actions with ';', e.g. "Left;Up"). ``--steps N`` plays N random valid
actions instead (random integer codes for continuous envs).
"""
from __future__ import annotations

from pathlib import Path

import typer


def register(debug_app: typer.Typer) -> None:
    @debug_app.command("envs")
    def envs(addr: str = typer.Option("127.0.0.1:50051", help="Env server address.")):
        """List the env ids a server hosts and their specs."""
        import asyncio

        from rich.console import Console
        from rich.table import Table

        from atlasrl.clients.env import EnvClient

        async def fetch():
            async with EnvClient(addr) as client:
                return await client.list_envs()

        specs = _run(asyncio.run, fetch())
        table = Table(title=f"envs on {addr}")
        for col in ("env id", "family", "image", "actions", "max steps", "grid", "per turn"):
            table.add_column(col, overflow="fold")
        for s in specs:
            actions = ", ".join(s.valid_actions) if s.valid_actions else (f"{s.action_dim} ints" if s.action_dim else "")
            table.add_row(s.env_id, s.family, "x".join(map(str, s.image_shape)), actions, str(s.max_steps or ""),
                          f"{s.grid_rows}x{s.grid_cols}" if s.grid_rows else "", str(s.max_actions_per_turn or ""))
        console = Console()
        console.print(table)
        for s in specs:
            if s.config:
                console.print(f"[bold]{s.env_id}[/] config: " + " ".join(f"{k}={v}" for k, v in sorted(s.config.items())))

    @debug_app.command("env")
    def env(
        addr: str = typer.Option("127.0.0.1:50051", help="Env server address."),
        env: str = typer.Option("frozenlake", "--env", help="Env id."),
        seed: int = typer.Option(None, help="Seed of the instance and the episode."),
        actions: str = typer.Option(None, help="Comma-separated actions, one per turn; ';' joins several into one turn."),
        steps: int = typer.Option(None, help="Play this many random valid actions instead of --actions."),
        config: list[str] = typer.Option([], help="Env setting key=value (repeatable)."),
        save_frames: Path = typer.Option(None, help="Directory for frame_000.png, frame_001.png, ..."),
        strict: bool = typer.Option(False, help="Reject unparseable action text (INVALID_ARGUMENT) instead of a penalised no-op."),
    ):
        """Step through one episode, print a table per step and save the frames."""
        import asyncio

        cfg = {}
        for kv in config:
            if "=" not in kv:
                raise typer.BadParameter(f"--config expects key=value, got '{kv}'")
            k, v = kv.split("=", 1)
            cfg[k.strip()] = v.strip()
        if actions is None and steps is None:
            raise typer.BadParameter("give --actions or --steps")
        turns = [a.strip().replace(";", ",") for a in actions.split(",")] if actions else None
        _run(asyncio.run, _episode(addr, env, seed, cfg, turns, steps, save_frames, strict))


async def _episode(addr, env_id, seed, cfg, turns, steps, save_frames, strict) -> None:
    import numpy as np
    from PIL import Image
    from rich.console import Console
    from rich.table import Table

    from atlasrl.clients.env import EnvClient
    from atlasrl.rpc import RemoteError

    console = Console()
    rng = np.random.default_rng(seed)
    if save_frames:
        save_frames.mkdir(parents=True, exist_ok=True)
    async with EnvClient(addr) as client:
        handle, spec = await client.open(env_id, cfg, seed)
        obs = await client.reset(handle, seed)
        console.print(f"[bold]{spec.env_id}[/] handle {handle}  image {list(spec.image_shape)}  max steps {spec.max_steps}  "
                      f"layout {obs.layout_key}\n{spec.instruction}")
        table = Table()
        for col in ("turn", "action", "reward", "done", "success", "agent"):
            table.add_column(col, no_wrap=True)
        for col in ("info", "text"):
            table.add_column(col, overflow="fold")

        def show(turn, action, o) -> None:
            info = {k: v for k, v in o.info.items() if k not in ("step", "success", "actions")}
            done = "terminated" if o.terminated else "truncated" if o.truncated else ""
            table.add_row(str(turn), action, f"{o.reward:+.3f}", done, "yes" if o.success else "", f"{o.agent}",
                          " ".join(f"{k}={_fmt(v)}" for k, v in sorted(info.items())), o.text)
            if save_frames and o.images:
                Image.fromarray(o.images[0]).save(save_frames / f"frame_{turn:03d}.png")

        show(0, "(reset)", obs)
        plan = turns if turns is not None else [None] * steps
        for turn, text in enumerate(plan, start=1):
            if text is None:
                text = _random_action(spec, rng)
            try:
                obs = await client.step_one(handle, text, strict=strict)
            except RemoteError as e:
                table.add_row(str(turn), text, "", "", "", "", f"[red]{e}[/]", "")
                continue
            show(turn, text, obs)
            if obs.done:
                break
        await client.close([handle])
    console.print(table)
    if save_frames:
        console.print(f"frames saved to {save_frames}/")


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _random_action(spec, rng) -> str:
    if spec.valid_actions:
        return str(rng.choice(list(spec.valid_actions)))
    from atlasrl.action_codec import BINS

    return " ".join(str(int(x)) for x in rng.integers(0, BINS + 1, size=max(1, spec.action_dim)))


def _run(fn, arg):
    """Run and turn RPC failures into a one-line message instead of a traceback."""
    import grpc

    from atlasrl.rpc import RemoteError

    try:
        return fn(arg)
    except RemoteError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    except grpc.aio.AioRpcError as e:
        typer.echo(f"error: {e.code().name}: {e.details()}", err=True)
        raise typer.Exit(1) from None
