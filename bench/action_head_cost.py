"""Per-decision cost: an action-head policy (backbone + flow expert) against a text policy on the same frame.

    .venv/bin/python bench/action_head_cost.py                 # ~1-2 min on 2 cores
    .venv/bin/python bench/action_head_cost.py --batches 1,32 --repeats 5

One decision = one observation in, one action chunk out (the reach env's 8 x 2 velocities). Rows:
- `action_head atlas`: the reach-flow preset's policy (patch embedding + keypoints, expert K = 4 SDE steps),
  sampling plus the log-prob pass the actor records (ActionHeadEngine.generate).
- `action_head hf_vl`: the same expert on the tiny Qwen2.5-VL backbone (one prefill, no decoding).
- `text`: the transformers engine on the tiny Qwen2.5-VL writing the chunk as text ("dx dy, ..." of 8 pairs,
  ~40 tokens, as VLA-0-style text policies do): prefill plus one decode step per token.
Random weights: the text row samples up to ``--text-tokens`` tokens (the random model sometimes ends earlier;
the tokens per decision are printed). Prints the load average; last line JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", default="1,32")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--text-tokens", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    import torch
    import yaml

    from atlasrl.actors.engines import EngineConfig, GenerationRequest, SamplingParams, make_engine
    from atlasrl.envserver.envs.reach import ReachEnv
    from atlasrl.models.chat import user
    from atlasrl.models.tiny import tiny_model_path
    from atlasrl.policies.action_head.config import ActionHeadConfig

    torch.set_num_threads(args.threads)
    preset = yaml.safe_load((Path(__file__).resolve().parents[1] / "atlasrl/config/presets/reach-flow.yaml").read_text())
    atlas = ActionHeadConfig(**preset["actor"]["action_head"])
    vl = str(tiny_model_path("qwen2.5-vl"))
    hf = atlas.model_copy(update={"backbone": "hf_vl", "model": vl})
    env = ReachEnv.from_config({"image_size": "64"}, seed=0)
    frame = env.text_reset(seed=0).images[0]
    text = "Move the blue dot onto the red target. Answer with 8 'dx dy' pairs."
    engines = {
        "action_head atlas": (make_engine(EngineConfig(kind="action_head", model="", action_head=atlas)), SamplingParams()),
        "action_head hf_vl": (make_engine(EngineConfig(kind="action_head", model=vl, action_head=hf)), SamplingParams()),
        "text (tiny Qwen2.5-VL)": (make_engine(EngineConfig(kind="transformers", model=vl)),
                                   SamplingParams(max_tokens=args.text_tokens, temperature=1.0)),
    }
    load0 = os.getloadavg()
    rows = []
    for b in (int(x) for x in args.batches.split(",")):
        reqs = [GenerationRequest([user(text, images=1)], [frame]) for _ in range(b)]
        for name, (engine, params) in engines.items():
            out = engine.generate(reqs, params)
            tokens = sum(len(g.token_ids) for g in out) / b
            s = timed(lambda e=engine, pr=params, rq=reqs: e.generate(rq, pr), args.repeats)
            rows.append({"policy": name, "batch": b, "ms_per_decision": 1000 * s / b, "tokens_per_decision": tokens})
    load1 = os.getloadavg()
    print(f"load average {load0[0]:.1f} -> {load1[0]:.1f} on {os.cpu_count()} cores (shared machine: relative figures)")
    print(f"{'policy':<26} {'batch':>5} {'ms/decision':>12} {'tokens':>7}")
    for r in rows:
        print(f"{r['policy']:<26} {r['batch']:>5} {r['ms_per_decision']:>12.2f} {r['tokens_per_decision']:>7.1f}")
    ratio = {str(b): next(r["ms_per_decision"] for r in rows if r["batch"] == b and r["policy"].startswith("text"))
             / next(r["ms_per_decision"] for r in rows if r["batch"] == b and r["policy"] == "action_head hf_vl")
             for b in {r["batch"] for r in rows}}
    print(json.dumps({"rows": rows, "text_over_action_head_hf_vl": ratio, "loadavg": [load0, load1]}))


if __name__ == "__main__":
    main()
