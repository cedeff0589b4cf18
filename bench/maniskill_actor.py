"""An actor driving ManiSkill with a VL model: env steps/s, decisions/s and where a decision's time goes.

    .venv/bin/python bench/maniskill_actor.py [--model DIR] [--episodes 8] [--num-envs 4] [--max-turns 25]
        [--chunk 4] [--execute 2] [--render decision|every_step] [--max-new-tokens 80] [--profile]
    .venv/bin/python bench/maniskill_actor.py --scripted      # the scripted PickCube policy instead of a model

What runs: an in-process env server (gRPC loopback, threads) hosting maniskill:PickCube-v1 with the preset's
chunk settings, and the actor's real RolloutLoop + Policy with the transformers engine on the tiny random-weights
Qwen2.5-VL (default, as `atlasrl up --preset maniskill-pickcube`) or ``--model DIR``. No learner: throughput of
acting only. A random model writes no valid chunk, so its decisions are the env's one-step hold; ``--scripted``
(the PickCube policy of tests/maniskill) executes full chunks and succeeds, the upper bound of env steps per
decision.

Reports decisions/s, env (physics) steps/s, and per decision: generation (the batched engine call, divided over
the batch), the env step round trip (physics, the decision's rendered frame, the rest = observation assembly and
gRPC; from the env's info.sim_s / render_s) and what is left (prompt building, records). ``--profile`` adds the
cProfile top table of one in-process decision (text -> codec -> ensemble -> physics -> frame) and of one batched
generate call. The load average is printed: figures on a shared machine move with it. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_engine(args):
    if args.scripted:
        sys.path.insert(0, str(ROOT / "tests" / "maniskill"))
        from maniskill_scripted import ScriptedEngine

        return ScriptedEngine(horizon=args.chunk), "scripted PickCube policy"
    from atlasrl.actors.engines import EngineConfig, make_engine
    from atlasrl.models.tiny import tiny_model_path

    model = args.model or str(tiny_model_path("qwen2.5-vl"))
    return make_engine(EngineConfig(model=model, seed=0)), model


async def run(args, engine) -> dict:
    from atlasrl.actors.config import ActorConfig
    from atlasrl.actors.metrics import ActorMetrics
    from atlasrl.actors.policy import Policy
    from atlasrl.actors.rollout import RolloutLoop, env_clients
    from atlasrl.envserver.config import EnvServerConfig
    from atlasrl.envserver.server import EnvServer

    server = EnvServer(EnvServerConfig(port=0, workers=0, envs=["maniskill"]))
    await server.start()
    env_config = {"image_size": str(args.image_size), "action_chunk": str(args.chunk),
                  "execute_steps": str(args.execute), "render": args.render}
    cfg = ActorConfig(envs=[server.address], env_id="maniskill:PickCube-v1", env_config=env_config,
                      action_mode="free", num_envs=args.num_envs, group_size=1, max_turns=args.max_turns,
                      max_new_tokens=args.max_new_tokens, use_image=True, bare_prompt=not args.scripted,
                      max_learner_backlog=0)
    metrics = ActorMetrics()
    policy = Policy(engine, cfg, metrics=metrics)
    links = env_clients(cfg.envs)
    per_turn: list[dict] = []
    gen_s = [0.0]
    step_s = [0.0]
    batches = [0]

    generate = policy.generate

    async def timed_generate(inputs, *a, **kw):   # instrumentation only: the same call, timed
        t0 = time.perf_counter()
        out = await generate(inputs, *a, **kw)
        gen_s[0] += time.perf_counter() - t0
        batches[0] += 1
        return out
    policy.generate = timed_generate

    episodes: list = []

    async def on_episode(_proto, ep) -> None:
        episodes.append(ep)
        for obs in ep.observations:
            info = obs.info
            if "sim_s" in info:
                per_turn.append({k: float(info[k]) for k in ("sim_s", "render_s", "steps_applied")})

    loop = RolloutLoop(cfg, policy, links, on_episode=on_episode, metrics=metrics)
    orig_step_link = loop._step_link

    async def timed_step_link(pairs):
        t0 = time.perf_counter()
        res = await orig_step_link(pairs)
        step_s[0] += time.perf_counter() - t0
        return res
    loop._step_link = timed_step_link

    # Warm-up: open the sessions (env creation compiles shaders) and reset, outside the timed part.
    await loop._repair_slots()
    t0 = time.perf_counter()
    await loop.run(max_episodes=args.episodes)
    wall = time.perf_counter() - t0
    await server.stop(0)

    decisions = len(per_turn)
    steps = sum(t["steps_applied"] for t in per_turn)
    sim = sum(t["sim_s"] for t in per_turn)
    render = sum(t["render_s"] for t in per_turn)
    return {
        "episodes": len(episodes), "successes": sum(ep.success for ep in episodes), "decisions": decisions,
        "env_steps": int(steps), "wall_s": wall, "decisions_per_s": decisions / wall, "env_steps_per_s": steps / wall,
        "batches": batches[0], "generate_s": gen_s[0], "env_step_rpc_s": step_s[0], "physics_s": sim,
        "render_s": render, "tokens": loop.tokens,
    }


def profile_tables(args, engine, top: int) -> dict[str, str]:
    """cProfile of one in-process decision loop and of one batched generate call (main thread)."""
    from atlasrl.actors.engines.base import GenerationRequest, SamplingParams
    from atlasrl.envserver.maniskill import make_env

    sys.path.insert(0, str(ROOT / "tests" / "maniskill"))
    from maniskill_scripted import pickcube_text

    env = make_env({"image_size": str(args.image_size), "action_chunk": str(args.chunk),
                    "execute_steps": str(args.execute), "render": args.render, "max_steps": "100000"},
                   0, "maniskill:PickCube-v1")
    out = env.text_reset(seed=0)
    tables = {}
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(10):
        out = env.text_step(pickcube_text(out.text, args.chunk))
    prof.disable()
    tables["env: 10 decisions in-process"] = _top(prof, top)
    frame = out.images[0]
    env.close()
    msgs = [{"role": "system", "content": ""}, {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": out.text}]}]
    reqs = [GenerationRequest(messages=msgs, images=[frame]) for _ in range(args.num_envs)]
    params = SamplingParams(max_tokens=args.max_new_tokens, stop=("</answer>",))
    engine.generate(reqs, params)   # warm-up
    prof = cProfile.Profile()
    prof.enable()
    engine.generate(reqs, params)
    prof.disable()
    tables[f"engine: one generate of {args.num_envs} prompts x {args.max_new_tokens} tokens"] = _top(prof, top)
    return tables


def _top(prof: cProfile.Profile, n: int) -> str:
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(n)
    lines = buf.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("ncalls"))
    head = [line for line in lines[:start] if "function calls" in line]
    return "\n".join(head + lines[start:start + n + 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="", help="HF model directory (default: the tiny random-weights Qwen2.5-VL)")
    ap.add_argument("--scripted", action="store_true", help="the scripted PickCube policy instead of a model")
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--num-envs", type=int, default=4)
    ap.add_argument("--max-turns", type=int, default=25)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--execute", type=int, default=2)
    ap.add_argument("--render", choices=["decision", "every_step"], default="decision")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=80)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    load = os.getloadavg()
    engine, name = build_engine(args)
    r = asyncio.run(run(args, engine))
    d = max(1, r["decisions"])
    gen_ms = 1000 * r["generate_s"] / d          # a batch's generate time shared by its decisions
    rpc_ms = 1000 * r["env_step_rpc_s"] / d
    phys_ms, render_ms = 1000 * r["physics_s"] / d, 1000 * r["render_s"] / d
    wall_ms = 1000 * r["wall_s"] / d
    print(f"machine load (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    print(f"actor on maniskill:PickCube-v1, policy: {name}; {args.num_envs} envs, {args.image_size}px, chunks H={args.chunk}, "
          f"execute_steps={args.execute}, render={args.render}")
    print(f"episodes {r['episodes']} (success {r['successes']}), decisions {r['decisions']}, env steps {r['env_steps']}, "
          f"wall {r['wall_s']:.1f} s")
    print(f"decisions/s {r['decisions_per_s']:.2f}   env steps/s {r['env_steps_per_s']:.2f}   "
          f"env steps/decision {r['env_steps'] / d:.2f}   tokens/decision {r['tokens'] / d:.1f}")
    print(f"\n{'per decision':<44} {'ms':>9} {'share':>7}")
    rows = [("generation (batched call / decisions)", gen_ms),
            ("env step round trip (batched / decisions)", rpc_ms),
            ("  of which physics (all steps)", phys_ms), ("  of which rendering the decision's frame", render_ms),
            ("  of which obs assembly + gRPC + server", max(0.0, rpc_ms - phys_ms - render_ms)),
            ("actor other (prompts, records, resets)", max(0.0, wall_ms - gen_ms - rpc_ms)), ("total (wall)", wall_ms)]
    for label, ms in rows:
        print(f"{label:<44} {ms:9.1f} {ms / wall_ms:7.1%}")
    tables = profile_tables(args, engine, args.top) if args.profile else {}
    for title, table in tables.items():
        print(f"\ncProfile top {args.top} by own time: {title}\n{table}")
    print(json.dumps({"bench": "maniskill_actor", "policy": name, "num_envs": args.num_envs,
                      "image_size": args.image_size, "chunk": args.chunk, "execute_steps": args.execute,
                      "render": args.render, "loadavg": load, **{k: (round(v, 4) if isinstance(v, float) else v)
                                                                for k, v in r.items()},
                      "per_decision_ms": {label.strip(): round(ms, 2) for label, ms in rows}}))


if __name__ == "__main__":
    main()
