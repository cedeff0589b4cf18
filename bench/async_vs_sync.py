"""Async vs sync RL, measured: the same training at staleness bounds 0 (synchronous), 1, 2 and 4, drain and interrupt.

    .venv/bin/python bench/async_vs_sync.py                      # all bounds, both swaps (~5-10 min on 2 cores)
    .venv/bin/python bench/async_vs_sync.py --bounds 0,1 --updates 4 --swaps drain    # a quick look

One process, real parts: an `atlasrl envserver` (in-process, real gRPC over loopback) with FrozenLake 8x8, whose
episode lengths are long-tailed (a hole ends many in a few turns, others wander to the turn cap); the actor's
RolloutLoop and Policy on the transformers engine with the tiny model; the learner's Trainer (FSDP2 on gloo).
Weights reach the Policy as the WeightSubscriber hands them over (a version object with to_torch()), so drain
(swap between generate calls, Policy.maybe_update) and interrupt (engine.stage_weights, between decode steps)
are the actor's real paths. Staleness bound k is VersionAdmission (atlasrl/actors/gate.py): a GRPO group of
learner batch b starts once the loaded policy has trained b - k updates. Bound 0 is synchronous training
(generation waits for the learner, the learner for generation), and tests/asyncrl/test_sync_equivalence.py checks
it reproduces a plain synchronous loop exactly (same episodes, same losses). The learner trains the first
complete groups in completion order (as its buffer does) until ``--updates`` updates of ``--batch`` episodes.

Simulated accelerator time (``--sim-step-s``, ``--sim-update-s``: the real settings actor.sim_step_s and
learner.sim_update_s). On a 2-core CPU the tiny model's generation and training compete for the same cores, so
overlapping them cannot buy wall time the way it does when generation runs on inference GPUs and training on
training GPUs. The bench therefore sleeps (CPU free) ``sim_step_s`` per engine forward pass and ``sim_update_s``
per update, a GPU-side ratio of generation to training time; the figures say so. Defaults: 20 ms per forward
(a decode step of a 3B VLM batch on one GPU is of that order) and 0.6 s per update, which gives
generation and training about equal shares in a synchronous run (learner and actor idle ~0.5 each).

Reported per run: wall time to the fixed number of trained episodes, learner idle fraction (not in an update),
actor idle fraction (not generating or stepping envs), staleness of the trained tokens (learner version minus the
version that produced each token), held-out success at temperature 1 on seeds no run trains on (Wilson 95 %).
Last line: one JSON object with "speedup_by_bound" (wall time of bound 0 / bound k, drain) and
"speedup_by_bound_interrupt", and every run's figures.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ENV_CONFIG = {"size": "8", "text_mode": "relative", "max_actions_per_turn": "1"}
EVAL_SEED_START = 900_000     # held-out seeds: no run trains on them


@dataclass
class Spec:
    bound: int | None             # staleness bound; None = the plain synchronous loop (training inline, the reference)
    swap: str = "drain"           # actor.weight_swap
    updates: int = 8
    groups_per_batch: int = 4
    group_size: int = 2
    num_envs: int = 16
    max_turns: int = 40
    env_id: str = "frozenlake"
    env_config: dict = field(default_factory=lambda: dict(ENV_CONFIG))
    sim_step_s: float = 0.0
    sim_update_s: float = 0.0
    seed: int = 0
    lr: float = 1e-4
    eval_episodes: int = 0
    model: str = ""

    @property
    def batch(self) -> int:
        return self.groups_per_batch * self.group_size

    @property
    def name(self) -> str:
        return "sync-loop" if self.bound is None else f"bound {self.bound} {self.swap}"


@dataclass
class LocalVersion:
    """A weight version as WeightSubscriber.versions() yields it (the Policy reads these three members)."""

    version: int
    tensors: list
    lineage_reset: bool = False

    def to_torch(self) -> list:
        return self.tensors


class LocalWeights:
    """The learner's weight stream, in process: the Policy receives versions exactly as from a WeightSubscriber."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[LocalVersion] = asyncio.Queue()

    async def versions(self):
        while True:
            yield await self.queue.get()


def ensure_process_group() -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        store = tempfile.mktemp(prefix="atlasrl-async-bench-")
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)


async def run(spec: Spec, env_address: str) -> dict:
    """One training run; returns its figures (and, for the tests, every update's loss and episodes)."""
    import torch

    from atlasrl.actors.config import ActorConfig
    from atlasrl.actors.engines import EngineConfig, make_engine
    from atlasrl.actors.eval import evaluate
    from atlasrl.actors.gate import VersionAdmission
    from atlasrl.actors.policy import Policy
    from atlasrl.actors.rollout import RolloutLoop, env_clients
    from atlasrl.learner.config import LearnerConfig
    from atlasrl.learner.trainer import TrainBatch, Trainer
    from atlasrl.v1 import trajectory_pb2

    ensure_process_group()
    actor_cfg = ActorConfig(model=spec.model, envs=[env_address], env_id=spec.env_id, env_config=spec.env_config,
                            num_envs=spec.num_envs, group_size=spec.group_size, max_turns=spec.max_turns,
                            actor_id="bench", seed_start=spec.seed * 100_000, memory_hints="none", use_image=False,
                            weight_swap=spec.swap, sim_step_s=spec.sim_step_s)
    engine = make_engine(EngineConfig(model=spec.model, seed=spec.seed, weight_swap=spec.swap,
                                      sim_step_s=spec.sim_step_s))
    trainer = Trainer(LearnerConfig(model=spec.model, batch_episodes=spec.batch, seed=spec.seed, lr=spec.lr,
                                    sim_update_s=spec.sim_update_s))
    weights = LocalWeights() if spec.bound is not None else None
    policy = Policy(engine, actor_cfg, weights=weights)
    await policy.start()
    admit = VersionAdmission(spec.bound or 0, spec.groups_per_batch, lambda: engine.version)

    groups: dict[str, list[bytes]] = collections.defaultdict(list)
    ready: list[list[bytes]] = []          # complete groups, in completion order
    ready_event = asyncio.Event()
    updates: list[dict] = []
    learner_busy = 0.0
    actor_busy = 0.0
    t_start = time.monotonic()

    async def on_episode(proto: trajectory_pb2.Episode, _ep) -> None:
        groups[proto.group_id].append(proto.SerializeToString())
        if len(groups[proto.group_id]) == proto.group_size:
            ready.append(groups.pop(proto.group_id))
            ready_event.set()

    def train(batch: list[bytes]) -> tuple[dict, list]:
        eps = [trajectory_pb2.Episode.FromString(b) for b in batch]
        version = trainer.version
        lags = [version - v for ep in eps for t in ep.turns for v in (t.token_versions or
                                                                      [t.policy_version] * len(t.response_ids))]
        stats = trainer.update(TrainBatch(batch, [1.0] * len(batch), [0] * len(batch)))
        tensors = list(trainer.full_tensors(torch.float32))
        return {"loss": stats["loss"], "lags": lags, "seeds": [ep.seed for ep in eps],
                "success": [ep.success for ep in eps], "turns": [len(ep.turns) for ep in eps]}, tensors

    async def one_update() -> list:
        nonlocal learner_busy
        batch = [b for g in ready[:spec.groups_per_batch] for b in g]
        del ready[:spec.groups_per_batch]
        t0 = time.monotonic()
        record, tensors = await asyncio.to_thread(train, batch)
        learner_busy += time.monotonic() - t0
        record["t"] = time.monotonic() - t_start
        updates.append(record)
        return tensors

    class TimedLoop(RolloutLoop):
        async def _turn(self, active):
            nonlocal actor_busy
            t0 = time.monotonic()
            try:
                await super()._turn(active)
            finally:
                actor_busy += time.monotonic() - t0

    if spec.bound is None:
        # The reference: a plain synchronous loop. Training runs inline when a batch is complete, while nothing else
        # runs (the admission at bound 0 has parked every slot), and the new weights are loaded directly.
        async def gate() -> None:
            if len(ready) >= spec.groups_per_batch and len(updates) < spec.updates:
                tensors = await one_update()
                engine.update_weights(trainer.version, tensors)
                if len(updates) >= spec.updates:
                    loop.stop()
        learner = None
    else:
        async def gate() -> None:   # drain: load a received version between turns (also while every slot waits)
            await policy.maybe_update()

        async def learn() -> None:
            while len(updates) < spec.updates:
                while len(ready) < spec.groups_per_batch:
                    ready_event.clear()
                    await ready_event.wait()
                tensors = await one_update()
                weights.queue.put_nowait(LocalVersion(trainer.version, tensors))
            loop.stop()
        learner = asyncio.create_task(learn())

    loop = TimedLoop(actor_cfg, policy, env_clients([env_address]), on_episode=on_episode, gate=gate, admit=admit)
    await loop.run()
    if learner is not None:
        await learner
    wall = updates[-1]["t"]
    await policy.close()
    engine.update_weights(trainer.version, list(trainer.full_tensors(torch.float32)))   # the final policy
    out = {
        "run": spec.name, "bound": spec.bound, "swap": spec.swap, "updates": len(updates),
        "trained_episodes": sum(len(u["seeds"]) for u in updates), "wall_s": round(wall, 2),
        "learner_idle": round(1 - learner_busy / wall, 3), "actor_idle": round(1 - actor_busy / wall, 3),
        "lag_mean": round(sum(sum(u["lags"]) for u in updates) / max(1, sum(len(u["lags"]) for u in updates)), 3),
        "lag_max": max((max(u["lags"]) for u in updates if u["lags"]), default=0),
        "train_success": round(sum(sum(u["success"]) for u in updates) / max(1, sum(len(u["success"]) for u in updates)), 3),
        "turns_p50_p90_max": _percentiles([n for u in updates for n in u["turns"]]),
        "interrupts": engine.stats.get("interrupts", 0),
        "losses": [u["loss"] for u in updates], "seeds": [u["seeds"] for u in updates],
    }
    if spec.eval_episodes:
        report = await evaluate(actor_cfg, Policy(engine, actor_cfg), env_clients([env_address]),
                                episodes=spec.eval_episodes, seed_start=EVAL_SEED_START)
        out["heldout"] = {"success": round(report.success_rate, 3), "ci": [round(report.ci_low, 3), round(report.ci_high, 3)],
                          "episodes": report.episodes}
    engine.close()
    return out


async def initial_heldout(spec: Spec, env_address: str) -> dict:
    """Held-out success of the untrained model (the start every run shares), same seeds and settings."""
    from atlasrl.actors.config import ActorConfig
    from atlasrl.actors.engines import EngineConfig, make_engine
    from atlasrl.actors.eval import evaluate
    from atlasrl.actors.policy import Policy
    from atlasrl.actors.rollout import env_clients

    cfg = ActorConfig(model=spec.model, envs=[env_address], env_id=spec.env_id, env_config=spec.env_config,
                      num_envs=spec.num_envs, max_turns=spec.max_turns, actor_id="bench", memory_hints="none",
                      use_image=False)
    engine = make_engine(EngineConfig(model=spec.model, seed=spec.seed))
    report = await evaluate(cfg, Policy(engine, cfg), env_clients([env_address]), episodes=spec.eval_episodes,
                            seed_start=EVAL_SEED_START)
    engine.close()
    return {"success": round(report.success_rate, 3), "ci": [round(report.ci_low, 3), round(report.ci_high, 3)],
            "episodes": report.episodes}


def _percentiles(xs: list[int]) -> list[int]:
    if not xs:
        return [0, 0, 0]
    s = sorted(xs)
    return [s[len(s) // 2], s[min(len(s) - 1, int(len(s) * 0.9))], s[-1]]


async def main_async(args) -> list[dict]:
    from atlasrl.envserver.config import EnvServerConfig
    from atlasrl.envserver.server import EnvServer
    from atlasrl.models.tiny import tiny_model_path

    server = EnvServer(EnvServerConfig(port=0, workers=0))
    await server.start()
    model = str(tiny_model_path("qwen2", hidden=64, layers=2))
    base = dict(updates=args.updates, groups_per_batch=args.groups, group_size=args.group_size, num_envs=args.num_envs,
                max_turns=args.max_turns, sim_step_s=args.sim_step_s, sim_update_s=args.sim_update_s, seed=args.seed,
                eval_episodes=args.eval_episodes, model=model, lr=args.lr, env_config=args.env_config)
    specs = []
    for bound in args.bounds:
        for swap in args.swaps:
            if bound == 0 and swap != args.swaps[0]:
                continue     # bound 0: generation never overlaps an update, so no swap ever lands mid-call
            specs.append(Spec(bound=bound, swap=swap, **base))
    results = []
    try:
        if args.eval_episodes and specs:
            h = await initial_heldout(specs[0], server.address)
            args.heldout_initial = h
            print(f"{'untrained model':<20} {'':>7} {'':>12} {'':>10} {'':>12} {'':>17} {'':>10} "
                  f"{h['success']:.2f} [{h['ci'][0]:.2f}, {h['ci'][1]:.2f}]".rstrip(), flush=True)
        for spec in specs:
            r = await run(spec, server.address)
            results.append(r)
            print(row(r), flush=True)
    finally:
        await server.stop(0)
    return results


HEADER = (f"{'run':<20} {'wall s':>7} {'learner idle':>12} {'actor idle':>10} {'lag mean/max':>12} "
          f"{'turns p50/p90/max':>17} {'train succ':>10} {'held-out (95% CI)':>22}")


def row(r: dict) -> str:
    h = r.get("heldout")
    held = f"{h['success']:.2f} [{h['ci'][0]:.2f}, {h['ci'][1]:.2f}]" if h else "-"
    return (f"{r['run']:<20} {r['wall_s']:>7.1f} {r['learner_idle']:>12.2f} {r['actor_idle']:>10.2f} "
            f"{r['lag_mean']:>7.2f}/{r['lag_max']:<4} {'/'.join(map(str, r['turns_p50_p90_max'])):>17} "
            f"{r['train_success']:>10.2f} {held:>22}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bounds", default="0,1,2,4", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--swaps", default="drain,interrupt", type=lambda s: s.split(","))
    p.add_argument("--updates", type=int, default=8, help="updates per run (trained episodes = updates x batch)")
    p.add_argument("--groups", type=int, default=4, help="GRPO groups per learner batch")
    p.add_argument("--group-size", type=int, default=2)
    p.add_argument("--num-envs", type=int, default=16, help="actor env slots (sync can use one batch of them)")
    p.add_argument("--max-turns", type=int, default=40)
    p.add_argument("--sim-step-s", type=float, default=0.02, help="actor.sim_step_s: simulated time per forward pass")
    p.add_argument("--sim-update-s", type=float, default=0.6, help="learner.sim_update_s: simulated time per update")
    p.add_argument("--eval-episodes", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--env-set", default="", help="env config overrides, k=v[,k=v] (e.g. size=6,hole_prob=0.1)")
    args = p.parse_args()
    args.env_config = {**ENV_CONFIG, **dict(kv.split("=", 1) for kv in args.env_set.split(",") if kv)}
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} ({os.cpu_count()} cores); simulated accelerator "
          f"time: {args.sim_step_s * 1000:.0f} ms per forward pass, {args.sim_update_s:.1f} s per update")
    print(f"FrozenLake {args.env_config}, batch {args.groups * args.group_size} episodes ({args.groups} groups of {args.group_size}), "
          f"{args.updates} updates, {args.num_envs} env slots, turn cap {args.max_turns}")
    print(HEADER)
    results = asyncio.run(main_async(args))
    sync = next((r for r in results if r["bound"] == 0), None)
    speedup: dict[str, dict[str, float]] = {"drain": {}, "interrupt": {}}
    if sync is not None:
        for r in results:
            if r["bound"]:
                speedup[r["swap"]][str(r["bound"])] = round(sync["wall_s"] / r["wall_s"], 2)
    for r in results:
        r.pop("losses"), r.pop("seeds")
    print(json.dumps({
        "bench": "async_vs_sync", "load_avg": [round(x, 2) for x in load], "end_load_avg": [round(x, 2) for x in os.getloadavg()],
        "sim_step_s": args.sim_step_s, "sim_update_s": args.sim_update_s, "env": "frozenlake", "env_config": args.env_config,
        "batch_episodes": args.groups * args.group_size, "updates": args.updates, "num_envs": args.num_envs,
        "heldout_initial": getattr(args, "heldout_initial", None), "speedup_by_bound": speedup["drain"], "speedup_by_bound_interrupt": speedup["interrupt"], "runs": results,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
