"""`atlasrl debug critic`: poke a live critic with frames.

    atlasrl debug critic --addr 127.0.0.1:50057                          # Info, then a synthetic two-frame episode
    atlasrl debug critic --image a.png --image b.png --task "pick up the cube"
    atlasrl debug critic --env 127.0.0.1:50051 --env-id frozenlake --steps 6   # frames of a live env episode

Prints the critic's backend and limits, then each frame's progress and done probability, the batch it ran in
and its latency, and the pair-wise Compare of the first and last frame. With the oracle backend the env frames
carry their simulator state.
"""
from __future__ import annotations

from pathlib import Path

import typer


def register(debug_app: typer.Typer) -> None:
    @debug_app.command("critic")
    def critic(
        addr: str = typer.Option("127.0.0.1:50057", help="Critic service address."),
        task: str = typer.Option("reach the goal", help="Task text."),
        image: list[Path] = typer.Option([], help="Frame image files (PNG/JPEG), in episode order; repeatable."),
        env: str = typer.Option("", help="Env server address: score the frames of one episode played there."),
        env_id: str = typer.Option("frozenlake", help="Env id with --env."),
        steps: int = typer.Option(6, help="Random steps with --env."),
        seed: int = typer.Option(0, help="Env seed with --env."),
        timeout: float = typer.Option(10.0, help="Deadline of each call, seconds."),
    ):
        """Info, Score and Compare against a live critic."""
        import asyncio
        import time

        import grpc
        import numpy as np

        from atlasrl.clients.critic import CriticClient, frame, oracle_state

        async def frames_from_env():
            import random

            from atlasrl.clients.env import EnvClient

            rng = random.Random(seed)
            async with EnvClient(env, decode_images=False) as envs:
                handle, spec = await envs.open(env_id, {})
                obs = (await envs.reset(handle, seed)).proto
                out = [frame(obs.images[0], oracle_state(obs, spec))]
                for _ in range(steps):
                    if obs.terminated or obs.truncated:
                        break
                    obs = (await envs.step_one(handle, rng.choice(list(spec.valid_actions)))).proto
                    out.append(frame(obs.images[0], oracle_state(obs, spec)))
                return out, spec.instruction or task

        def synthetic():
            a = np.zeros((64, 64, 3), np.uint8)
            b = a.copy()
            b[16:48, 16:48] = (40, 200, 60)
            return [frame(a), frame(b)]

        async def main():
            text = task
            if env:
                frames, text = await frames_from_env()
            elif image:
                from PIL import Image

                frames = [frame(np.asarray(Image.open(p).convert("RGB"))) for p in image]
            else:
                frames = synthetic()
            async with CriticClient(addr) as c:
                info = await c.info(timeout=timeout)
                typer.echo(f"critic {addr}: backend={info.backend} model={info.model or '-'} device={info.device} "
                           f"max_batch={info.max_batch} max_wait_ms={info.max_wait_ms} pairwise={info.pairwise} "
                           f"frames_scored={info.frames_scored}")
                t0 = time.perf_counter()
                resp = await c.score_response(text, frames, timeout=timeout)
                ms = (time.perf_counter() - t0) * 1e3
                for i, s in enumerate(resp.scores):
                    typer.echo(f"  frame {i}: progress {s.progress:.3f}  done {s.done_probability:.3f}")
                typer.echo(f"  {len(frames)} frames in {ms:.1f} ms (batch {resp.batch_size}, queue "
                           f"{resp.queue_ms:.1f} ms, model {resp.model_ms:.1f} ms)")
                if len(frames) >= 2:
                    typer.echo(f"  compare(first, last): {await c.compare(text, frames[0], frames[-1], timeout=timeout):+.3f}")

        try:
            asyncio.run(main())
        except grpc.RpcError as e:
            typer.echo(f"{e.code().name}: {e.details()}", err=True)
            raise typer.Exit(1) from None
