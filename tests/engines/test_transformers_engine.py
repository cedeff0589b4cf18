"""Transformers engine: log-prob agreement with the learner's recompute, choice mode, weight updates."""
import asyncio
import math

import numpy as np
import pytest
import torch

from atlasrl.actors.engines import GenerationRequest, SamplingParams
from atlasrl.actors.engines.sampling import top_p_filter
from atlasrl.models.chat import user
from atlasrl.models.load import load_policy
from atlasrl.models.logprobs import Sample, sample_logprobs
from atlasrl.models.tiny import tiny_model_path

from .conftest import ACTIONS, requests

# Sampled-token log-probs vs a teacher-forced forward of the same weights (float32 on CPU):
# measured max |diff| ~1e-6 (different padding and KV-cache kernels); 1e-4 leaves headroom.
TOL = 1e-4


def _recompute(policy, reqs, outs, temperature):
    samples = [Sample(o.prompt_ids, o.token_ids, r.images, o.choice_token_ids) for r, o in zip(reqs, outs)]
    return sample_logprobs(policy, samples, temperature)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_text_logprobs_agree_with_teacher_forcing(text_engine, temperature):
    reqs = requests(n_images=0, count=5)
    outs = text_engine.generate(reqs, SamplingParams(max_tokens=12, temperature=temperature, seed=3))
    for o, ref in zip(outs, _recompute(text_engine.policy, reqs, outs, temperature)):
        assert len(o.logprobs) == len(o.token_ids) > 0
        np.testing.assert_allclose(o.logprobs, ref, atol=TOL)


def test_vl_logprobs_agree_with_teacher_forcing(vl_engine):
    reqs = requests(n_images=1, count=4) + requests(n_images=2, count=2, seed=1)
    outs = vl_engine.generate(reqs, SamplingParams(max_tokens=10, temperature=1.0, seed=4))
    n_pad = [sum(1 for t in o.prompt_ids if t == vl_engine.policy.image_token_id) for o in outs]
    assert all(n > 0 for n in n_pad)
    for o, ref in zip(outs, _recompute(vl_engine.policy, reqs, outs, 1.0)):
        np.testing.assert_allclose(o.logprobs, ref, atol=TOL)


def test_choice_mode_always_yields_a_choice(text_engine):
    reqs = [GenerationRequest([user(f"Step {i}")], choices=ACTIONS + ["Up, Left"]) for i in range(16)]
    for o in text_engine.generate(reqs, SamplingParams(temperature=1.5, seed=0)):
        assert o.finish_reason == "stop" and o.choice_index is not None
        assert o.text == (ACTIONS + ["Up, Left"])[o.choice_index]
        assert o.token_ids == o.choice_token_ids[o.choice_index]


def test_choice_mode_samples_the_documented_distribution(text_engine):
    choices = ["Up", "Down", "Left", "Right", "Up, Left"]
    n = 600
    reqs = [GenerationRequest([user("Pick")], choices=choices) for _ in range(n)]
    outs = text_engine.generate(reqs, SamplingParams(temperature=0.3, seed=11))
    probs = np.array([math.exp(sum(_recompute(text_engine.policy, reqs[:1], [o], 0.3)[0]))
                      for o in _one_per_choice(outs, len(choices))])
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)
    counts = np.bincount([o.choice_index for o in outs], minlength=len(choices))
    sigma = np.sqrt(n * probs * (1 - probs)) + 1
    assert (np.abs(counts - n * probs) < 4.5 * sigma).all(), (counts, n * probs)


def test_equal_prompts_prefill_once_and_sample_apart(text_engine):
    """A GRPO group's rows on one state share the prefill; each still samples its own action."""
    reqs = [GenerationRequest([user("Same state")], choices=ACTIONS) for _ in range(8)]
    reqs.append(GenerationRequest([user("Another state")], choices=ACTIONS))
    calls = []
    hook = text_engine.policy.model.register_forward_hook(lambda m, args, kwargs, out: calls.append(kwargs["input_ids"].shape),
                                                          with_kwargs=True)
    before = text_engine.stats["prefill_tokens"]
    try:
        outs = text_engine.generate(reqs, SamplingParams(temperature=2.0, seed=2))
    finally:
        hook.remove()
    assert text_engine.stats["prefill_tokens"] - before == len(outs[0].prompt_ids) + len(outs[-1].prompt_ids)
    # one-token actions: the end token is the only one left after them, appended without a second forward
    assert calls == [(2, max(len(outs[0].prompt_ids), len(outs[-1].prompt_ids)))]
    assert len({o.choice_index for o in outs[:8]}) > 1
    for o, ref in zip(outs, _recompute(text_engine.policy, reqs, outs, 2.0)):
        assert o.finish_reason == "stop" and o.logprobs[-1] == 0.0
        np.testing.assert_allclose(o.logprobs, ref, atol=TOL)


def test_equal_text_with_other_images_is_not_shared(vl_engine):
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 256, (56, 56, 3), dtype=np.uint8) for _ in range(2)]
    reqs = [GenerationRequest([user("Where?", images=1)], [f], choices=ACTIONS) for f in (frames[0], frames[1], frames[0])]
    before = vl_engine.stats["prefill_tokens"]
    outs = vl_engine.generate(reqs, SamplingParams(temperature=1.0, seed=1))
    assert outs[0].prompt_ids == outs[1].prompt_ids
    assert vl_engine.stats["prefill_tokens"] - before == 2 * len(outs[0].prompt_ids)
    for o, ref in zip(outs, _recompute(vl_engine.policy, reqs, outs, 1.0)):
        np.testing.assert_allclose(o.logprobs, ref, atol=TOL)


def _one_per_choice(outs, k):
    """A generation for every choice index (forcing the missing ones by hand)."""
    by_index = {}
    for o in outs:
        by_index.setdefault(o.choice_index, o)
    proto = outs[0]
    res = []
    for i in range(k):
        o = by_index.get(i)
        if o is None:
            o = type(proto)(**{**vars(proto), "token_ids": proto.choice_token_ids[i], "choice_index": i})
        res.append(o)
    return res


def test_greedy_is_deterministic_and_seeds_reproduce(text_engine):
    reqs = requests(n_images=0, count=3, choice_every=99)
    g1 = text_engine.generate(reqs, SamplingParams(max_tokens=8, temperature=0))
    g2 = text_engine.generate(reqs[::-1], SamplingParams(max_tokens=8, temperature=0))[::-1]
    assert [o.token_ids for o in g1] == [o.token_ids for o in g2]
    s1 = text_engine.generate(reqs, SamplingParams(max_tokens=8, seed=5))
    s2 = text_engine.generate(reqs, SamplingParams(max_tokens=8, seed=5))
    assert [o.token_ids for o in s1] == [o.token_ids for o in s2]


def test_max_tokens_and_stop_strings(text_engine):
    reqs = requests(n_images=0, count=2, choice_every=99)
    for o in text_engine.generate(reqs, SamplingParams(max_tokens=5, temperature=0)):
        assert (o.finish_reason, len(o.token_ids)) == ("length", 5) or o.token_ids[-1] in text_engine.policy.eos_token_ids
    base = text_engine.generate(reqs[:1], SamplingParams(max_tokens=12, temperature=0))[0]
    stop = base.text[3:5]
    assert stop
    for include in (False, True):
        o = text_engine.generate(reqs[:1], SamplingParams(max_tokens=12, temperature=0, stop=(stop,),
                                                          include_stop_str_in_output=include))[0]
        assert o.finish_reason == "stop"
        assert o.text == base.text[:base.text.find(stop) + (len(stop) if include else 0)]
        assert o.token_ids == base.token_ids[:len(o.token_ids)] and len(o.token_ids) < 12


def test_top_p_filter_keeps_the_smallest_nucleus():
    p = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    assert torch.allclose(top_p_filter(p, 0.7), torch.tensor([[0.5, 0.3, 0.0, 0.0]]))
    assert top_p_filter(p, 0.1).tolist() == [[0.5, 0.0, 0.0, 0.0]]
    assert torch.equal(top_p_filter(p, 1.0), p)


def test_weight_update_switches_to_the_new_policy(vl_engine):
    new_policy = load_policy(tiny_model_path("qwen2.5-vl", seed=1))
    reqs = requests(n_images=1, count=3)
    params = SamplingParams(max_tokens=8, temperature=1.0, seed=2)
    before = vl_engine.generate(reqs, params)
    old_ref = _recompute(vl_engine.policy, reqs, before, 1.0)
    # checkpoint-form names (model.layers.*, visual.*) as read from disk
    from safetensors.torch import load_file
    vl_engine.update_weights(5, load_file(new_policy.path / "model.safetensors").items())
    assert vl_engine.version == 5
    after = vl_engine.generate(reqs, params)
    assert all(o.version == 5 for o in after)
    for o, ref in zip(after, _recompute(new_policy, reqs, after, 1.0)):
        np.testing.assert_allclose(o.logprobs, ref, atol=TOL)
    again = _recompute(new_policy, reqs, before, 1.0)      # same tokens, new weights -> other log-probs
    assert not np.allclose(np.concatenate(again), np.concatenate(old_ref), atol=1e-3)
    # module-form names (model.language_model.*) from a live model work too
    vl_engine.update_weights(6, load_policy(tiny_model_path("qwen2.5-vl", seed=0)).model.state_dict().items())
    back = vl_engine.generate(reqs, params)
    assert [o.token_ids for o in back] == [o.token_ids for o in before] and back[0].version == 6


def test_bad_weight_updates_change_nothing(text_engine):
    sd = text_engine.policy.model.state_dict()
    name = "model.layers.0.mlp.up_proj.weight"
    snapshot = sd[name].clone()
    version = text_engine.version
    with pytest.raises(ValueError, match="unknown parameter 'nope'"):
        text_engine.update_weights(9, [(name, torch.zeros_like(snapshot)), ("nope", torch.zeros(1))])
    with pytest.raises(ValueError, match="shape"):
        text_engine.update_weights(9, [(name, torch.zeros(3, 3))])
    assert text_engine.version == version and torch.equal(sd[name], snapshot)


def test_async_generate(text_engine):
    reqs = requests(n_images=0, count=2)
    outs = asyncio.run(text_engine.agenerate(reqs, SamplingParams(max_tokens=4, temperature=0)))
    assert len(outs) == 2 and all(o.prompt_ids for o in outs)
    assert text_engine.generate([], SamplingParams()) == []


def test_bad_requests_fail_before_generating(text_engine):
    with pytest.raises(ValueError, match="at least one choice"):
        text_engine.generate([GenerationRequest([user("x")], choices=[])], SamplingParams())
    with pytest.raises(ValueError, match="max_tokens"):
        SamplingParams(max_tokens=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)


def test_reseed_replays_the_same_samples_and_other_seeds_differ(text_engine):
    """TransformersEngine.reseed restarts the engine's own RNG (requests without SamplingParams.seed): the same
    requests then sample the same tokens again, as bench/rollout_throughput.py needs to give two loops equal work."""
    reqs = requests(n_images=0, count=6)
    params = SamplingParams(max_tokens=8, temperature=1.0)

    def run(seed):
        text_engine.reseed(seed)
        return [o.token_ids for o in text_engine.generate(reqs, params)]
    first = run(5)
    assert run(5) == first
    assert run(6) != first


def test_choice_tries_are_built_once_per_choice_list_and_bad_choices_still_refused(text_engine):
    from atlasrl.models.choice import ChoiceError

    reqs = [GenerationRequest([user(f"Step {i}")], choices=ACTIONS) for i in range(4)]
    a = text_engine.generate(reqs[:2], SamplingParams(seed=1))
    b = text_engine.generate(reqs[2:], SamplingParams(seed=1))
    assert text_engine._choice_trie(tuple(ACTIONS)) is text_engine._choice_trie(tuple(ACTIONS))
    assert all(o.choice_token_ids == a[0].choice_token_ids for o in a + b)
    a[0].choice_token_ids[0].append(99)            # a caller's copy: the cached trie is not touched
    assert text_engine.generate(reqs[:1], SamplingParams(seed=1))[0].choice_token_ids == b[0].choice_token_ids
    with pytest.raises(ChoiceError, match="at least one choice"):
        text_engine.generate([GenerationRequest([user("x")], choices=[])], SamplingParams())
