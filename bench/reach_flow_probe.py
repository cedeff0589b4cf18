"""Learning probe: the action-head policy learns reach from pixels (real env server over gRPC, real learner).

    .venv/bin/python bench/reach_flow_probe.py --minutes 8 --seed 0          # one probe run
    .venv/bin/python bench/reach_flow_probe.py --minutes 15 --seeds 0,1,2    # the target: 3 seeds, >= 0.9 held out

One process, real parts: an in-process `atlasrl envserver` (loopback gRPC) serving `reach`; the actor's
ActionHeadEngine (batched SDE sampling, numeric chunks sent as Action.values); the learner's Trainer
(FSDP2 on gloo, GRPO/GiGPO/PPO from atlasrl/learner/losses.py) on the engine's TurnRecords; after every
update the new weights go into the engine by update_weights (what the WeightService stream does between
processes). The same preset settings as atlasrl/config/presets/reach-flow.yaml.

Evaluation: held-out seeds (from 900000, never trained on), the deterministic ODE (temperature 0), success
rate with a Wilson 95 % interval, before training and every --eval-every seconds. Prints the machine load.
Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EVAL_SEED_START = 900_000


def preset_configs(overrides: list[str] = ()):
    """Engine and learner settings of the reach-flow preset (one source: the preset file), with ``--set``
    overrides: ``learner.KEY=VALUE`` or ``action_head.KEY=VALUE`` (the policy both sides build)."""
    import yaml

    preset = yaml.safe_load((Path(__file__).resolve().parents[1] / "atlasrl/config/presets/reach-flow.yaml").read_text())
    for item in overrides:
        key, sep, value = item.partition("=")
        section, _, name = key.partition(".")
        if not sep or not name or section not in ("learner", "action_head"):
            raise SystemExit(f"--set {item!r}: expected learner.KEY=VALUE or action_head.KEY=VALUE")
        target = preset["actor"]["action_head"] if section == "action_head" else preset["learner"]
        target[name] = yaml.safe_load(value)
    preset["learner"]["action_head"] = preset["actor"]["action_head"]
    return preset


async def play(engine, client, seeds: list[int], env_config: dict, stochastic: bool, sample_seed: int):
    """One episode per seed, all envs stepped together; returns (episodes as TurnRecord lists, successes)."""
    from atlasrl.actors.engines import GenerationRequest, SamplingParams
    from atlasrl.models.chat import user
    from atlasrl.policies.action_head.learning import turn_record

    handles = []
    for s in seeds:
        h, _ = await client.open("reach", env_config, seed=s)
        handles.append(h)
    obs = {h: await client.reset(h, seed=s) for h, s in zip(handles, seeds)}
    turns: dict[int, list] = {h: [] for h in handles}
    live = list(handles)
    k = 0
    while live:
        reqs = [GenerationRequest([user(obs[h].text, images=1)], [obs[h].images[0]]) for h in live]
        gens = await engine.agenerate(reqs, SamplingParams(temperature=1.0 if stochastic else 0.0, seed=sample_seed * 1000 + k))
        k += 1
        results = await client.step([(h, g.extra["chunk"]) for h, g in zip(live, gens)])
        nxt = []
        for h, g, r in zip(live, gens, results):
            o = r.unwrap()
            rec = turn_record(g.prompt_ids, obs[h].images[0], g.extra, g.logprobs)
            rec.reward = rec.env_reward = o.reward
            rec.policy_version = g.version
            rec.state_key = f"{o.layout_key}|{len(turns[h])}".encode()
            turns[h].append((rec, o))
            obs[h] = o
            if not o.done:
                nxt.append(h)
        live = nxt
    await client.close(handles)
    return [turns[h] for h in handles], [turns[h][-1][1].success for h in handles]


async def evaluate(engine, client, n: int, env_config: dict) -> tuple[float, float, float]:
    from atlasrl.actors.eval import wilson_interval

    seeds = list(range(EVAL_SEED_START, EVAL_SEED_START + n))
    _, wins = await play(engine, client, seeds, env_config, stochastic=False, sample_seed=0)
    lo, hi = wilson_interval(sum(wins), n)
    return sum(wins) / n, lo, hi


async def run(args, seed: int) -> dict:
    import torch

    from atlasrl.actors.engines import EngineConfig, make_engine
    from atlasrl.clients.env import EnvClient
    from atlasrl.envserver.config import EnvServerConfig
    from atlasrl.envserver.server import EnvServer
    from atlasrl.learner.config import LearnerConfig
    from atlasrl.learner.trainer import TrainBatch, Trainer
    from atlasrl.policies.action_head.config import ActionHeadConfig
    from atlasrl.v1 import trajectory_pb2

    torch.set_num_threads(args.threads)
    import tempfile

    import torch.distributed as dist

    if not dist.is_initialized():   # the Trainer's FSDP2 needs a process group, even of one rank
        dist.init_process_group("gloo", init_method=f"file://{tempfile.mktemp(prefix='atlasrl-pg-')}", rank=0, world_size=1)
    preset = preset_configs(args.set)
    ah = ActionHeadConfig(**preset["actor"]["action_head"])
    env_config = {k: str(v) for k, v in preset["actor"]["env_config"].items()}
    lcfg = {k: v for k, v in preset["learner"].items() if k not in ("action_head", "max_staleness")}
    learner = LearnerConfig(model="", action_head=ah, seed=seed, **lcfg)
    engine = make_engine(EngineConfig(kind="action_head", model="", action_head=ah, seed=seed))
    trainer = Trainer(learner)
    group_size = preset["actor"]["group_size"]
    groups = learner.batch_episodes // group_size
    server = EnvServer(EnvServerConfig(port=0, workers=0))
    await server.start()
    rows, t0 = [], time.perf_counter()
    gen_s = step_decisions = 0.0
    try:
        async with EnvClient(server.address) as client:
            sr, lo, hi = await evaluate(engine, client, args.eval_episodes, env_config)
            rows.append((0, 0.0, 0, sr, lo, hi))
            print(f"seed {seed}: update 0, {sr:.2f} [{lo:.2f}, {hi:.2f}] held out", flush=True)
            next_eval, update, train_seed = args.eval_every, 0, seed * 10_000_000
            while time.perf_counter() - t0 < args.minutes * 60:
                seeds = [train_seed + g for g in range(groups) for _ in range(group_size)]
                train_seed += groups
                t1 = time.perf_counter()
                eps, wins = await play(engine, client, seeds, env_config, stochastic=True, sample_seed=seed * 100_000 + update)
                gen_s += time.perf_counter() - t1
                step_decisions += sum(len(e) for e in eps)
                batch = []
                for s, turns in zip(seeds, eps):
                    ep = trajectory_pb2.Episode(episode_id=str(uuid.uuid4()), group_id=str(s), group_size=group_size,
                                                env_id="reach", seed=s, success=turns[-1][1].success, policy_versions=[trainer.version])
                    ep.turns.extend(rec for rec, _ in turns)
                    batch.append(ep.SerializeToString())
                stats = await asyncio.to_thread(trainer.update, TrainBatch(batch, [1.0] * len(batch), [0] * len(batch)))
                update += 1
                engine.update_weights(trainer.version, trainer.full_tensors(torch.float32))
                if update % 10 == 0:
                    print(f"  update {update}: train success {sum(wins) / len(wins):.2f}, reward {stats['reward_mean']:.3f}, "
                          f"approx_kl {stats['approx_kl']:.4f}, clipfrac {stats['clipfrac']:.3f}, {time.perf_counter() - t0:.0f} s", flush=True)
                if time.perf_counter() - t0 >= next_eval:
                    next_eval += args.eval_every
                    sr, lo, hi = await evaluate(engine, client, args.eval_episodes, env_config)
                    rows.append((update, time.perf_counter() - t0, update * learner.batch_episodes, sr, lo, hi))
                    print(f"seed {seed}: update {update}, {sr:.2f} [{lo:.2f}, {hi:.2f}] held out, {rows[-1][1]:.0f} s", flush=True)
            sr, lo, hi = await evaluate(engine, client, args.final_episodes, env_config)
            rows.append((update, time.perf_counter() - t0, update * learner.batch_episodes, sr, lo, hi))
    finally:
        await server.stop()
    return {"seed": seed, "updates": update, "final_success": sr, "final_ci": [lo, hi], "seconds": rows[-1][1],
            "curve": rows, "ms_per_decision_rollout": 1000 * gen_s / max(step_decisions, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=8.0, help="training wall time per seed")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds")
    p.add_argument("--eval-every", type=float, default=120.0, help="seconds between held-out evaluations")
    p.add_argument("--eval-episodes", type=int, default=64)
    p.add_argument("--final-episodes", type=int, default=200)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a preset setting: learner.lr=1e-4, action_head.noise_std_final=0.3 (repeatable)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core machine)")
    args = p.parse_args()
    load0 = os.getloadavg()
    results = [asyncio.run(run(args, int(s))) for s in args.seeds.split(",")]
    load1 = os.getloadavg()
    print(f"\nload average before {load0[0]:.1f}, after {load1[0]:.1f} (cores: {os.cpu_count()})")
    print(f"{'seed':>4} {'updates':>8} {'seconds':>8} {'held-out success':>18} {'95% CI':>16}")
    for r in results:
        print(f"{r['seed']:>4} {r['updates']:>8} {r['seconds']:>8.0f} {r['final_success']:>18.3f} "
              f"[{r['final_ci'][0]:.3f}, {r['final_ci'][1]:.3f}]")
    print(json.dumps({"results": results, "overrides": args.set, "loadavg_before": load0, "loadavg_after": load1,
                      "target_met": all(r["final_success"] >= 0.9 for r in results)}))


if __name__ == "__main__":
    main()
