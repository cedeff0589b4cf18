"""Generation engines on the tiny models: tokens/s vs HF ``generate``, choice turns, weight swaps.

    .venv/bin/python bench/engine_generate.py [--threads 1] [--max-tokens 32]
    .venv-vllm/bin/python bench/engine_generate.py --engine vllm

For each model (tiny qwen2, tiny qwen2.5-vl with one 128x128 frame per prompt) and
batch size it measures generated tokens/s of the engine (free mode, temperature 1,
EOS ignored by using a budget the random model rarely stops before) and, as the
baseline in the same run on the same prompts, HF ``model.generate`` with sampling
(which returns no per-token log-probs unless asked; we ask, as RL needs them).
Also: a choice-mode turn (4 actions) per prompt, and an in-place weight update.
Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def _requests(n, vl, choices=None):
    from atlasrl.actors.engines import GenerationRequest
    from atlasrl.models.chat import system, user

    rng = np.random.default_rng(0)
    return [GenerationRequest([system("You push boxes onto targets."), user(f"Step {i}. Where next?", images=int(vl))],
                              [rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)] if vl else [], choices=choices)
            for i in range(n)]


def _best(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), out


def bench_hf(policy, reqs, max_tokens, repeats):
    """Baseline: HF generate (left padding, sampling, scores kept for log-probs)."""
    import torch

    from atlasrl.models.chat import encode_prompt
    from atlasrl.models.positions import mm_token_type_ids

    encs = [encode_prompt(policy, r.messages, list(r.images)) for r in reqs]
    S = max(len(e.input_ids) for e in encs)
    ids = torch.full((len(encs), S), policy.pad_token_id)
    mask = torch.zeros_like(ids)
    for b, e in enumerate(encs):
        ids[b, S - len(e.input_ids):] = torch.tensor(e.input_ids)
        mask[b, S - len(e.input_ids):] = 1
    kw = {}
    if policy.is_vl:
        kw = dict(pixel_values=torch.cat([e.pixel_values for e in encs]),
                  image_grid_thw=torch.cat([e.image_grid_thw for e in encs]),
                  mm_token_type_ids=mm_token_type_ids(ids, policy.image_token_id))

    def run():
        with torch.inference_mode():
            out = policy.model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0,
                                        top_k=0, max_new_tokens=max_tokens, min_new_tokens=max_tokens,
                                        output_scores=True, return_dict_in_generate=True,
                                        pad_token_id=policy.pad_token_id, **kw)
        return out.sequences.shape[1] - S
    best, _med, new = _best(run, repeats)
    return len(reqs) * new / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", default="transformers", choices=["transformers", "vllm"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (transformers engine and baseline)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--archs", default="qwen2,qwen2.5-vl")
    args = ap.parse_args()

    import torch

    from atlasrl.actors.engines import EngineConfig, SamplingParams, make_engine
    from atlasrl.models.load import load_policy
    from atlasrl.models.tiny import tiny_model_path

    torch.set_num_threads(args.threads)
    rows = []
    for arch in args.archs.split(","):
        path = str(tiny_model_path(arch))
        engine = make_engine(EngineConfig(kind=args.engine, model=path, threads=args.threads, max_model_len=1024))
        policy = load_policy(path)
        vl = policy.is_vl
        params = SamplingParams(max_tokens=args.max_tokens, temperature=1.0, seed=0)
        engine.generate(_requests(2, vl), params)                               # warm-up
        for bs in [int(b) for b in args.batches.split(",")]:
            reqs = _requests(bs, vl)
            best, med, outs = _best(lambda: engine.generate(reqs, params), args.repeats)  # noqa: B023 - called within this iteration
            toks = sum(len(o.token_ids) for o in outs)
            hf = bench_hf(policy, reqs, args.max_tokens, args.repeats) if args.engine == "transformers" else None
            rows.append(dict(arch=arch, engine=args.engine, batch=bs, tokens_per_s=toks / best,
                             hf_generate_tokens_per_s=hf, ratio_vs_hf=(toks / best) / hf if hf else None,
                             median_s=med))
        creqs = _requests(32, vl, choices=["Up", "Down", "Left", "Right"])
        best, _, _ = _best(lambda: engine.generate(creqs, params), args.repeats)  # noqa: B023 - called within this iteration
        sd = policy.model.state_dict()
        upd, _, _ = _best(lambda: engine.update_weights(1, sd.items()), args.repeats)  # noqa: B023 - called within this iteration
        rows.append(dict(arch=arch, engine=args.engine, choice_turns_per_s=32 / best, weight_update_s=upd,
                         params=sum(p.numel() for p in policy.model.parameters())))
        engine.close()

    print(f"{'arch':11s} {'engine':12s} {'batch':>5s} {'tok/s':>9s} {'HF tok/s':>9s} {'ratio':>6s}")
    for r in rows:
        if "batch" in r:
            hf = f"{r['hf_generate_tokens_per_s']:9.0f}" if r["hf_generate_tokens_per_s"] else f"{'-':>9s}"
            ratio = f"{r['ratio_vs_hf']:6.2f}" if r["ratio_vs_hf"] else f"{'-':>6s}"
            print(f"{r['arch']:11s} {r['engine']:12s} {r['batch']:5d} {r['tokens_per_s']:9.0f} {hf} {ratio}")
        else:
            print(f"{r['arch']:11s} {r['engine']:12s} choice turns/s (batch 32): {r['choice_turns_per_s']:.0f}; "
                  f"weight update: {r['weight_update_s'] * 1e3:.0f} ms ({r['params']:,} params)")
    print(json.dumps({"bench": "engine_generate", "engine": args.engine, "threads": args.threads,
                      "max_tokens": args.max_tokens, "rows": rows}))


if __name__ == "__main__":
    main()
