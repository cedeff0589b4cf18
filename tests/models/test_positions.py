"""M-RoPE positions computed without the model match HF's get_rope_index, padding included."""
import pytest
import torch

from atlasrl.models.chat import encode_prompt, user
from atlasrl.models.load import load_policy
from atlasrl.models.logprobs import Sample, build_batch
from atlasrl.models.positions import mm_token_type_ids, mrope_positions, text_positions


def _left_padded(policy, prompts):
    S = max(len(p.input_ids) for p in prompts)
    ids = torch.full((len(prompts), S), policy.pad_token_id)
    mask = torch.zeros_like(ids)
    for b, p in enumerate(prompts):
        ids[b, S - len(p.input_ids):] = torch.tensor(p.input_ids)
        mask[b, S - len(p.input_ids):] = 1
    return ids, mask


def test_mrope_matches_hf_get_rope_index(vl_policy, frames):
    prompts = [encode_prompt(vl_policy, [user("one image, a longer question here", images=1)], frames[:1]),
               encode_prompt(vl_policy, [user("two", images=2)], frames),
               encode_prompt(vl_policy, [user("a", images=1), {"role": "assistant", "content": "Up"},
                                         user("b", images=1)], frames[::-1])]
    ids, mask = _left_padded(vl_policy, prompts)
    grid = torch.cat([p.image_grid_thw for p in prompts])
    ours = mrope_positions(ids, mask, grid, vl_policy.image_token_id, vl_policy.spatial_merge_size)
    hf, _ = vl_policy.model.model.get_rope_index(ids, mm_token_type_ids=mm_token_type_ids(ids, vl_policy.image_token_id),
                                                 image_grid_thw=grid, attention_mask=mask)
    assert torch.equal(ours, hf * mask.unsqueeze(0))
    assert not torch.equal(ours[1], text_positions(mask))      # images really are 2-D


def test_mrope_rejects_grids_that_do_not_fit(vl_policy, frames):
    p = encode_prompt(vl_policy, [user("x", images=1)], frames[:1])
    ids, mask = _left_padded(vl_policy, [p])
    with pytest.raises(ValueError, match="more image grids"):
        mrope_positions(ids, mask, torch.cat([p.image_grid_thw] * 2), vl_policy.image_token_id, 2)
    with pytest.raises(ValueError, match="consecutive image tokens"):
        mrope_positions(ids, mask, p.image_grid_thw * 2, vl_policy.image_token_id, 2)


def test_learner_can_batch_without_the_model(vl_policy, frames):
    no_model = load_policy(vl_policy.path, with_model=False)
    p = encode_prompt(vl_policy, [user("x", images=2)], frames)
    samples = [Sample(p.input_ids, [5, 6, vl_policy.eos_token_ids[0]], frames)]
    a, b = build_batch(no_model, samples), build_batch(vl_policy, samples)
    assert torch.equal(a.position_ids, b.position_ids) and torch.equal(a.input_ids, b.input_ids)
    assert torch.equal(a.pixel_values, b.pixel_values)
