"""The checks of ``scripts/gpu-check.sh``: each stage runs atlasrl's own code on this host's device and reports
its figures into one JSON file (stages of several runs merge into it, so each may use its own interpreter).

    python -m atlasrl.gpucheck --stages learner,maniskill --out bench/results/gpu-check-2026-12-07.json
    .venv-vllm/bin/python -m atlasrl.gpucheck --stages logprobs --engine vllm --out bench/results/...json
    python -m atlasrl.gpucheck --allow-cpu --nproc 2 --updates 2 --stages learner   # the same code on gloo (tests)

Stages (every one is the code a CUDA run uses; on the CPU only the backend and dtypes differ):

- ``learner``: ``nproc`` ranks train the tiny Qwen2.5-VL (FSDP2; NCCL on cuda:LOCAL_RANK with bf16 parameters
  and fp32 reductions, gloo on the CPU) for ``updates`` updates on GRPO groups with images, sampled by the
  transformers engine so the behaviour log-probs are the policy's own. Figures: backend, world, seconds per
  update, tokens/s, loss first and last, peak GPU memory. Fails on a rank error, a non-finite loss, or any
  parameter, gradient or optimizer state off the rank's device (``Trainer.misplaced``).
- ``logprobs``: the actor's engine (``--engine``, resolved by ``engine_config`` as an actor would: bf16 on a
  GPU) generates free and choice turns on an image prompt; the learner's log-prob code (``PolicyModel``, in the
  dtype its mixed precision computes in) recomputes them. Then the learner's weights move (one seeded step)
  and reach the engine through ``update_weights`` (the weight sync), and the comparison is repeated. Figures:
  max and mean absolute difference before and after, the engine's version. Fails over the tolerance (2e-4 in
  fp32, 0.1 in bf16) or if the new weights did not arrive.
- ``maniskill``: PickCube-v1 with RGB observations, GPU physics (``physx_cuda``) and GPU rendering when CUDA
  is there (physx_cpu and the CPU renderer otherwise): environments, steps, frames/s, frame shape.

Exit status: 0 when every stage asked for passed, 1 when one failed, 2 when there is no CUDA GPU and
``--allow-cpu`` was not given.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

STAGES = ("learner", "logprobs", "maniskill")
BF16_TOLERANCE, FP32_TOLERANCE = 0.1, 2e-4


class NoGpu(RuntimeError):
    pass


def host_info() -> dict[str, Any]:
    import platform

    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cuda": torch.version.cuda, "gpus": 0, "host": platform.node()}
    if torch.cuda.is_available():
        info["gpus"] = torch.cuda.device_count()
        info["gpu_names"] = [torch.cuda.get_device_name(i) for i in range(info["gpus"])]
    return info


def tiny_vl_model() -> str:
    from atlasrl.models.tiny import tiny_model_path

    return str(tiny_model_path("qwen2.5-vl", seed=0))


# ---- episodes -----------------------------------------------------------------------------------------------
def requests(n: int = 4):
    """Image prompts, half free mode and half choice mode (what actors send), with the images of each."""
    import numpy as np

    from atlasrl.actors.engines.base import GenerationRequest
    from atlasrl.models.chat import system, user

    rng = np.random.default_rng(0)
    reqs = []
    for k in range(n):
        frame = rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)
        msgs = [system("Play."), user("Where next?", images=1)]
        reqs.append(GenerationRequest(messages=msgs, images=[frame],
                                      choices=["Up", "Down", "Left", "Right"] if k % 2 else None))
    return reqs


def episodes_from(outs, reqs, group: str = "g") -> list:
    """One single-turn Episode per generation, rewards alternating (so GRPO has advantages)."""
    from atlasrl import codec
    from atlasrl.v1 import trajectory_pb2

    eps = []
    for k, (out, req) in enumerate(zip(outs, reqs)):
        t = trajectory_pb2.TurnRecord(
            prompt_ids=out.prompt_ids, response_ids=out.token_ids, logprobs=out.logprobs,
            loss_mask=[1] * len(out.token_ids), reward=float(k % 2), temperature=out.temperature,
            policy_version=out.version,
            action_mode=trajectory_pb2.ACTION_MODE_CHOICE if out.choice_token_ids else trajectory_pb2.ACTION_MODE_FREE)
        for c in out.choice_token_ids or []:
            t.choices.add(ids=c)
        t.images.extend(codec.encode(i) for i in req.images)
        eps.append(trajectory_pb2.Episode(episode_id=f"{group}{k}", group_id=f"{group}{k // 4}", group_size=4,
                                          turns=[t]))
    return eps


# ---- learner ------------------------------------------------------------------------------------------------
def _learner_rank(rank: int, world: int, store: str, cfg_json: str, batch_path: str, out_dir: str, updates: int) -> None:
    """One rank: the backend of this host (``backend_device``), the trainer, ``updates`` updates, a weight gather."""
    import torch
    import torch.distributed as dist

    from atlasrl.learner.config import LearnerConfig
    from atlasrl.learner.trainer import Trainer, backend_device

    os.environ["LOCAL_RANK"] = str(rank)
    backend, device = backend_device(rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        torch.set_num_threads(1)
    dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        trainer = Trainer(LearnerConfig.model_validate_json(cfg_json), rank=rank, world=world, device=device)
        batch = torch.load(batch_path, weights_only=False)
        stats = [trainer.update(batch) for _ in range(updates)]
        gathered = sum(1 for _, t in trainer.full_tensors(torch.bfloat16) if t is not None)
        report = {
            "backend": backend, "device": str(device), "losses": [s["loss"] for s in stats],
            "seconds": [s["seconds"] for s in stats], "tokens_per_second": [s["tokens_per_second"] for s in stats],
            "misplaced": trainer.misplaced(), "gathered_tensors": gathered,
            "mixed_precision_bf16": trainer.mp.param_dtype is not None,
            "peak_gpu_memory_mib": (torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else 0.0,
        }
        Path(out_dir, f"rank-{rank}.json").write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


def stage_learner(nproc: int = 1, updates: int = 20, **_) -> dict[str, Any]:
    import torch
    import torch.multiprocessing as mp

    from atlasrl.actors.engines import EngineConfig, SamplingParams, make_engine
    from atlasrl.learner.config import LearnerConfig
    from atlasrl.learner.trainer import TrainBatch

    model = tiny_vl_model()
    engine = make_engine(EngineConfig(model=model, seed=0))    # CPU sampler: on-policy behaviour log-probs
    try:
        reqs = requests(8)
        eps = episodes_from(engine.generate(reqs, SamplingParams(max_tokens=8, temperature=1.0, seed=0)), reqs)
    finally:
        engine.close()
    cfg = LearnerConfig(model=model, algo="grpo", lr=1e-3, batch_episodes=len(eps), recompute_proximal=False,
                        behav_imp_weight_cap=None, clip_eps_high=5.0, micro_batch_tokens=2048)
    with tempfile.TemporaryDirectory(prefix="atlasrl-gpucheck-") as tmp:
        torch.save(TrainBatch([e.SerializeToString() for e in eps], [1.0] * len(eps), [0] * len(eps)),
                   Path(tmp, "batch.pt"))
        store = Path(tmp, "store")
        t0 = time.perf_counter()
        from atlasrl.gpucheck import _learner_rank as rank_main  # by its module name, also under -m

        mp.spawn(rank_main, args=(nproc, str(store), cfg.model_dump_json(), str(Path(tmp, "batch.pt")), tmp,
                                      updates), nprocs=nproc, join=True)
        wall = time.perf_counter() - t0
        ranks = [json.loads(Path(tmp, f"rank-{r}.json").read_text()) for r in range(nproc)]
    r0 = ranks[0]
    losses, seconds = r0["losses"], r0["seconds"]
    misplaced = [m for r in ranks for m in r["misplaced"]]
    problems = []
    if not all(math.isfinite(v) for v in losses):
        problems.append(f"non-finite loss: {losses}")
    if misplaced:
        problems.append(f"{len(misplaced)} tensors off the rank's device, e.g. {misplaced[0]}")
    if r0["gathered_tensors"] == 0:
        problems.append("the weight gather returned no tensors")
    return {
        "ok": not problems, "problems": problems, "backend": r0["backend"], "world": nproc, "updates": len(losses),
        "model": "tiny qwen2.5-vl", "episodes_per_update": len(eps), "bf16_mixed_precision": r0["mixed_precision_bf16"],
        "loss_first": losses[0], "loss_last": losses[-1], "loss_fell": losses[-1] < losses[0],
        "seconds_per_update_mean": sum(seconds) / len(seconds),
        "seconds_per_update_after_first": (sum(seconds[1:]) / (len(seconds) - 1)) if len(seconds) > 1 else None,
        "tokens_per_second_mean": sum(r0["tokens_per_second"]) / len(seconds),
        "peak_gpu_memory_mib": [r["peak_gpu_memory_mib"] for r in ranks], "wall_seconds": wall,
        "misplaced": misplaced,
    }


# ---- log-prob agreement and weight sync ---------------------------------------------------------------------------
def _learner_logprobs(policy, info, eps, device) -> list[list[float]]:
    import torch

    from atlasrl.learner.batching import collate, episode_seqs

    out = []
    with torch.no_grad():
        for i, ep in enumerate(eps):
            mb = collate(episode_seqs(ep, i, 1.0), info)
            logp = policy(mb["tf"].to(device), mb["temperature"])[0]
            out.append(logp[0, : len(ep.turns[0].response_ids)].float().cpu().tolist())
    return out


def _max_mean(eps, mine) -> tuple[float, float]:
    diffs = [abs(a - b) for ep, m in zip(eps, mine) for a, b in zip(ep.turns[0].logprobs, m)]
    return max(diffs), sum(diffs) / len(diffs)


def stage_logprobs(engine: str = "transformers", **_) -> dict[str, Any]:
    import torch

    from atlasrl.actors.actor import build_engine
    from atlasrl.actors.config import ActorConfig, engine_config
    from atlasrl.actors.engines import SamplingParams
    from atlasrl.learner.policy import PolicyModel, load_lm
    from atlasrl.models.load import load_policy

    model = tiny_vl_model()
    actor = ActorConfig(model=model, engine=engine, max_model_len=1024 if engine == "vllm" else None)
    ecfg = engine_config(actor)                       # what an actor on this host runs: bf16 on a GPU
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[ecfg.dtype]
    device = torch.device(ecfg.device)
    eng = build_engine(actor)
    try:
        info = load_policy(model, with_model=False)
        # the learner's forward under mixed precision computes with parameters in the engine's dtype
        policy = PolicyModel(load_lm(model)).to(device=device, dtype=dtype).eval()
        reqs, params = requests(4), SamplingParams(max_tokens=8, temperature=0.8, seed=1)
        eps = episodes_from(eng.generate(reqs, params), reqs)
        before = _max_mean(eps, _learner_logprobs(policy, info, eps, device))
        # one seeded step of the learner's weights, then the sync to the engine
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in policy.parameters():
                p.add_((torch.randn(p.shape, generator=g) * 0.02).to(device=device, dtype=p.dtype))
        t0 = time.perf_counter()
        eng.update_weights(1, [(n, p.detach().to("cpu")) for n, p in policy.hf_named_parameters()])
        sync_s = time.perf_counter() - t0
        outs = eng.generate(reqs, params)
        eps = episodes_from(outs, reqs, group="h")
        after = _max_mean(eps, _learner_logprobs(policy, info, eps, device))
    finally:
        eng.close()
    tol = FP32_TOLERANCE if dtype == torch.float32 else BF16_TOLERANCE
    problems = []
    if max(before[0], after[0]) > tol:
        problems.append(f"log-probs differ by up to {max(before[0], after[0]):.3g} (> {tol})")
    if eng.version != 1 or any(o.version != 1 for o in outs):
        problems.append("the engine did not act with the synced weights (version 1)")
    return {"ok": not problems, "problems": problems, "engine": engine, "device": str(device), "dtype": ecfg.dtype,
            "enforce_eager": ecfg.enforce_eager, "tokens_compared": sum(len(e.turns[0].logprobs) for e in eps),
            "max_abs_diff_before_sync": before[0], "mean_abs_diff_before_sync": before[1],
            "max_abs_diff_after_sync": after[0], "mean_abs_diff_after_sync": after[1], "tolerance": tol,
            "weight_sync_seconds": sync_s, "engine_version_after_sync": eng.version}


# ---- ManiSkill ----------------------------------------------------------------------------------------------
def stage_maniskill(steps: int = 50, **_) -> dict[str, Any]:
    import gymnasium as gym
    import torch

    from atlasrl.envserver.maniskill.probe import require_renderer

    require_renderer()
    import mani_skill.envs  # noqa: F401 - registers the tasks

    cuda = torch.cuda.is_available()
    n = 16 if cuda else 1
    t0 = time.perf_counter()
    env = gym.make("PickCube-v1", obs_mode="rgb", num_envs=n, sim_backend="physx_cuda" if cuda else "physx_cpu",
                   render_backend="gpu" if cuda else "cpu", sensor_configs={"width": 128, "height": 128})
    try:
        obs: Any = env.reset(seed=0)[0]
        created = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _step in range(steps):
            obs = env.step(env.action_space.sample())[0]
        seconds = time.perf_counter() - t0
        cams = obs["sensor_data"]
        frame = next(iter(cams.values()))["rgb"]
        shape, mean = list(frame.shape), float(frame.float().mean())
        device = str(frame.device)
    finally:
        env.close()
    problems = [] if mean > 0 else ["frames are black"]
    return {"ok": not problems, "problems": problems, "sim_backend": "physx_cuda" if cuda else "physx_cpu",
            "render_backend": "gpu" if cuda else "cpu", "envs": n, "steps": steps, "frames": n * steps,
            "frames_per_second": n * steps / seconds, "create_seconds": created, "frame_shape": shape,
            "frame_device": device, "cameras": len(cams), "frame_mean": mean}


RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {"learner": stage_learner, "logprobs": stage_logprobs,
                                                     "maniskill": stage_maniskill}


def run_stage(name: str, **kw) -> dict[str, Any]:
    """One stage's figures; an exception is a failed stage (its traceback kept), never a crash of the check."""
    t0 = time.perf_counter()
    try:
        result = RUNNERS[name](**kw)
    except Exception as e:  # noqa: BLE001 - every failure is a figure of the report, never a crash
        result = {"ok": False, "problems": [f"{type(e).__name__}: {e}"], "traceback": traceback.format_exc()}
    result["stage_seconds"] = time.perf_counter() - t0
    return result


def merge_report(path: Path, key: str, result: dict[str, Any], host: dict[str, Any]) -> dict[str, Any]:
    """Add one stage to the JSON report at ``path`` (created if needed); ``ok`` is over every stage in it."""
    report = json.loads(path.read_text()) if path.exists() else {"stages": {}}
    report["host"] = host
    report["date"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    report["stages"][key] = result
    report["ok"] = all(s.get("ok") for s in report["stages"].values())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m atlasrl.gpucheck", description=__doc__.split("\n\n")[0])
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma list of {', '.join(STAGES)}")
    ap.add_argument("--out", type=Path, default=Path("bench/results") / f"gpu-check-{time.strftime('%Y-%m-%d')}.json")
    ap.add_argument("--nproc", type=int, default=None, help="learner ranks (default: every visible GPU, at most 4)")
    ap.add_argument("--updates", type=int, default=20)
    ap.add_argument("--engine", choices=("transformers", "vllm"), default="transformers")
    ap.add_argument("--steps", type=int, default=50, help="ManiSkill steps")
    ap.add_argument("--allow-cpu", action="store_true", help="run on a host without CUDA (gloo, fp32): for tests")
    args = ap.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in RUNNERS]
    if unknown:
        ap.error(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGES)}")
    host = host_info()
    if not host["gpus"] and not args.allow_cpu:
        print("gpu-check: no CUDA GPU visible to torch in this environment (torch "
              f"{host['torch']}, CUDA {host['cuda']}); nothing checked. On a GPU host: a CUDA build of torch and the "
              "NVIDIA driver; --allow-cpu runs the same stages on the CPU.", file=sys.stderr)
        return 2
    nproc = args.nproc or max(1, min(4, host["gpus"]))
    failed = False
    for name in stages:
        key = f"logprobs_{args.engine}" if name == "logprobs" else name
        print(f"==> {key}", flush=True)
        result = run_stage(name, nproc=nproc, updates=args.updates, engine=args.engine, steps=args.steps)
        merge_report(args.out, key, result, host)
        shown = {k: v for k, v in result.items() if k not in ("traceback", "misplaced")}
        print(json.dumps(shown, default=str), flush=True)
        failed |= not result["ok"]
    print(f"report: {args.out}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
