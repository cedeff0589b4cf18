"""Teacher-forced log-probs: padding-invariant, M-RoPE-correct, choice mode a proper distribution."""
import math

import numpy as np
import pytest
import torch

from atlasrl.models.chat import encode_prompt, user
from atlasrl.models.choice import choice_token_ids
from atlasrl.models.logprobs import (
    Sample,
    banned_response_ids,
    build_batch,
    response_logprobs,
    sample_logprobs,
    share_key,
)
from atlasrl.models.positions import mm_token_type_ids


def _prompt(policy, text, images=()):
    return encode_prompt(policy, [user(text, images=len(images))], list(images))


def _resp(policy, text):
    return policy.tokenizer.encode(text, add_special_tokens=False) + [policy.eos_token_ids[0]]


@torch.no_grad()
def _reference(policy, prompt_ids, response_ids, temperature=1.0, **vision):
    """Plain HF forward of one unpadded sequence, positions left to the model; the ids engines never sample
    (a VL model's image placeholder: banned_response_ids) get no probability, as in the engines."""
    ids = torch.tensor([list(prompt_ids) + list(response_ids)])
    if vision:
        vision["mm_token_type_ids"] = mm_token_type_ids(ids, policy.image_token_id)
    logits = policy.model(input_ids=ids, **vision).logits[0].float() / temperature
    for banned in banned_response_ids(policy):
        logits[:, banned] = float("-inf")
    logp = torch.log_softmax(logits, -1)
    n = len(prompt_ids)
    return [float(logp[n - 1 + i, t]) for i, t in enumerate(response_ids)]


def test_text_matches_plain_forward_whatever_the_padding(text_policy):
    p1, p2 = _prompt(text_policy, "Go Up"), _prompt(text_policy, "A much longer prompt about the box and the goal")
    r1, r2 = _resp(text_policy, "<think>x</think><answer>Up</answer>"), _resp(text_policy, "Left")
    got = sample_logprobs(text_policy, [Sample(p1.input_ids, r1), Sample(p2.input_ids, r2)], temperature=0.7)
    for (p, r), g in zip([(p1, r1), (p2, r2)], got):
        np.testing.assert_allclose(g, _reference(text_policy, p.input_ids, r, 0.7), atol=2e-5)


def test_vl_positions_match_hf_mrope(vl_policy, frames):
    p1 = _prompt(vl_policy, "Where is the box?", frames[:1])
    p2 = _prompt(vl_policy, "Two views, short", frames)
    r1, r2 = _resp(vl_policy, "Up"), _resp(vl_policy, "Right, Down")
    got = sample_logprobs(vl_policy, [Sample(p1.input_ids, r1, frames[:1]), Sample(p2.input_ids, r2, frames)])
    for (p, r), g in zip([(p1, r1), (p2, r2)], got):
        ref = _reference(vl_policy, p.input_ids, r, pixel_values=p.pixel_values, image_grid_thw=p.image_grid_thw)
        np.testing.assert_allclose(g, ref, atol=2e-5)


def test_vl_logprobs_depend_on_the_image_and_on_mrope(vl_policy, frames):
    p = _prompt(vl_policy, "Where?", frames[:1])
    r = _resp(vl_policy, "Up")
    base = sample_logprobs(vl_policy, [Sample(p.input_ids, r, frames[:1])])[0]
    other = 255 - frames[0]
    p_other = _prompt(vl_policy, "Where?", [other])
    assert p_other.input_ids == p.input_ids
    assert not np.allclose(base, sample_logprobs(vl_policy, [Sample(p.input_ids, r, [other])])[0], atol=1e-4)
    # 1-D positions (what transformers 5 does without mm_token_type_ids) give other numbers
    no_mrope = _reference(vl_policy, p.input_ids, r, pixel_values=p.pixel_values, image_grid_thw=p.image_grid_thw)
    ids = torch.tensor([p.input_ids + r])
    with torch.no_grad():
        logits = vl_policy.model(input_ids=ids, pixel_values=p.pixel_values, image_grid_thw=p.image_grid_thw).logits[0]
    flat = [float(torch.log_softmax(logits[len(p.input_ids) - 1 + i], -1)[t]) for i, t in enumerate(r)]
    np.testing.assert_allclose(base, no_mrope, atol=2e-5)
    assert not np.allclose(base, flat, atol=1e-4)


def test_greedy_uses_temperature_one(text_policy):
    p, r = _prompt(text_policy, "Go"), _resp(text_policy, "Up")
    s = [Sample(p.input_ids, r)]
    assert sample_logprobs(text_policy, s, 0.0) == sample_logprobs(text_policy, s, 1.0)


def test_choice_mode_is_a_normalised_distribution_over_choices(text_policy):
    p = _prompt(text_policy, "Pick one")
    end = text_policy.eos_token_ids[0]
    names = ["Up", "Down", "Left", "Right", "Up, Left", "Down, Down"]
    choices = choice_token_ids(text_policy.tokenizer, names, end)
    samples = [Sample(p.input_ids, c, choices=choices) for c in choices]
    for temperature in (1.0, 0.5):
        per_choice = sample_logprobs(text_policy, samples, temperature)
        total = sum(math.exp(sum(lp)) for lp in per_choice)
        assert total == pytest.approx(1.0, abs=1e-5)
    # by hand for "Up, Left": renormalise the tempered logits over the trie's allowed set
    with torch.no_grad():
        logits = text_policy.model(input_ids=torch.tensor([p.input_ids + choices[4]])).logits[0] / 0.5
    n = len(p.input_ids)
    expected = []
    for i, tok in enumerate(choices[4]):
        allowed = sorted({c[i] for c in choices if len(c) > i and c[:i] == choices[4][:i]})
        row = logits[n - 1 + i, allowed]
        expected.append(float(row[allowed.index(tok)] - torch.logsumexp(row, 0)))
    np.testing.assert_allclose(per_choice[4], expected, atol=2e-5)


def test_gradients_and_entropy(text_policy):
    p = _prompt(text_policy, "Go")
    end = text_policy.eos_token_ids[0]
    choices = choice_token_ids(text_policy.tokenizer, ["Up", "Down"], end)
    batch = build_batch(text_policy, [Sample(p.input_ids, _resp(text_policy, "Up Up")),
                                      Sample(p.input_ids, choices[1], choices=choices)])
    text_policy.model.zero_grad()
    logp, ent = response_logprobs(text_policy.model, batch, 1.0, with_entropy=True)
    logp.sum().backward()
    grad = text_policy.model.get_input_embeddings().weight.grad
    assert grad is not None and grad.abs().sum() > 0
    text_policy.model.zero_grad()
    logp, ent = logp.detach(), ent.detach()
    assert (ent >= -1e-6).all() and float(ent[0, 0]) > 0
    assert float(ent[1, 1]) == pytest.approx(0.0, abs=1e-6)     # only the end token is allowed
    assert float(logp[1, 1]) == pytest.approx(0.0, abs=1e-6)
    assert batch.response_mask[1].tolist() == [1.0, 1.0] + [0.0] * (batch.response_mask.shape[1] - 2)
    assert float(logp[1, 2]) == 0.0 and float(ent[1, 2]) == 0.0


def _logp_ent_grad(policy, samples, share):
    batch = build_batch(policy, samples, share=share)
    policy.model.zero_grad()
    logp, ent = response_logprobs(policy.model, batch, 0.8, with_entropy=True)
    (logp.sum() + 0.3 * ent.sum()).backward()
    grads = {n: p.grad.clone() for n, p in policy.model.named_parameters() if p.grad is not None}
    policy.model.zero_grad()
    return batch, logp.detach(), ent.detach(), grads


def test_shared_rows_are_exact(text_policy):
    """Samples needing the same logits run as one row; log-probs, entropies and gradients are unchanged."""
    end = text_policy.eos_token_ids[0]
    p1, p2 = _prompt(text_policy, "Pick one").input_ids, _prompt(text_policy, "Another state").input_ids
    choices = choice_token_ids(text_policy.tokenizer, ["Up", "Down", "Left", "Left, Left"], end)
    up, left2 = _resp(text_policy, "Up"), _resp(text_policy, "Up Down")
    samples = [
        Sample(p1, choices[0], choices=choices), Sample(p1, choices[1], choices=choices),   # one state, two actions
        Sample(p1, choices[3], choices=choices), Sample(p1, choices[0], choices=choices),
        Sample(p2, choices[1], choices=choices),                                          # another state
        Sample(p1, up), Sample(p1, up[:-1] + [up[0]]),                                    # free: differ in the last token
        Sample(p1, left2),                                                                # free: longer response
        Sample(p1, choices[2], choices=choices),
    ]
    # "Left" and "Left, Left" leave the position after "Left" open: they need the logits there, from one row
    assert share_key(samples[0]) == share_key(samples[1]) == share_key(samples[3]) != share_key(samples[2])
    assert share_key(samples[2]) == share_key(samples[8])
    assert share_key(samples[5]) == share_key(samples[6]) != share_key(samples[7])
    plain, lp0, ent0, g0 = _logp_ent_grad(text_policy, samples, share=False)
    shared, lp1, ent1, g1 = _logp_ent_grad(text_policy, samples, share=True)
    assert plain.row_map is None and plain.input_ids.shape[0] == 9
    assert shared.input_ids.shape[0] == 5 and shared.row_map.tolist() == [0, 0, 1, 0, 2, 3, 3, 4, 1]
    given = build_batch(text_policy, samples, share=True, keys=[share_key(s) for s in samples])   # keys the caller has
    assert given.row_map.tolist() == shared.row_map.tolist() and torch.equal(given.input_ids, shared.input_ids)
    with pytest.raises(ValueError, match="8 share keys for 9 samples"):
        build_batch(text_policy, samples, share=True, keys=[share_key(s) for s in samples[1:]])
    torch.testing.assert_close(lp1, lp0, rtol=0, atol=2e-6)
    torch.testing.assert_close(ent1, ent0, rtol=0, atol=2e-6)
    assert g0.keys() == g1.keys()
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-4, atol=1e-6)


def test_shared_rows_keep_images_apart(vl_policy, frames):
    p = _prompt(vl_policy, "Where?", frames[:1]).input_ids
    r = _resp(vl_policy, "Up")
    samples = [Sample(p, r, frames[:1]), Sample(p, r, [255 - frames[0]]), Sample(p, r, [frames[0].copy()])]
    batch = build_batch(vl_policy, samples, share=True)
    assert batch.row_map.tolist() == [0, 1, 0] and batch.image_grid_thw.shape[0] == 2
    with torch.no_grad():
        got, _ = response_logprobs(vl_policy.model, batch)
    np.testing.assert_allclose(got.tolist(), sample_logprobs(vl_policy, samples), atol=2e-5)


def test_bad_samples_name_the_problem(text_policy, vl_policy, frames):
    p = _prompt(text_policy, "Go").input_ids
    with pytest.raises(ValueError, match="sample 1: token id outside"):
        build_batch(text_policy, [Sample(p, [1]), Sample(p, [10**7])])
    with pytest.raises(ValueError, match="sample 0: empty"):
        build_batch(text_policy, [Sample(p, [])])
    with pytest.raises(ValueError, match="not allowed"):
        build_batch(text_policy, [Sample(p, [5, 6], choices=[[7, 8]])])
    vp = _prompt(vl_policy, "x", frames[:1]).input_ids
    with pytest.raises(ValueError, match="image tokens"):
        build_batch(vl_policy, [Sample(vp, [5], frames)])
