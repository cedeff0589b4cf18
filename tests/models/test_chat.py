"""Prompt encoding: chat template, image placeholder expansion, clear errors."""
import numpy as np
import pytest

from atlasrl.models.chat import PromptError, encode_prompt, image_token_counts, system, user


def test_text_prompt_ends_with_assistant_header(text_policy):
    enc = encode_prompt(text_policy, [system("Play."), user("Where next?")])
    assert enc.text.endswith("<|im_start|>assistant\n")
    assert enc.pixel_values is None
    assert text_policy.tokenizer.decode(enc.input_ids) == enc.text


def test_each_image_expands_to_its_patch_count(vl_policy, frames):
    enc = encode_prompt(vl_policy, [user("first", images=1), {"role": "assistant", "content": "Up"},
                                    user("second", images=1)], frames)
    counts = image_token_counts(vl_policy, frames)
    grid = enc.image_grid_thw.tolist()
    assert counts == [g[0] * g[1] * g[2] // 4 for g in grid]
    ids = np.array(enc.input_ids)
    runs, run = [], 0
    for is_pad in ids == vl_policy.image_token_id:
        if is_pad:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    assert runs == counts
    assert enc.pixel_values.shape[0] == sum(g[0] * g[1] * g[2] for g in grid)


def test_placeholder_count_must_match_images(vl_policy, frames):
    with pytest.raises(PromptError, match="2 images"):
        encode_prompt(vl_policy, [user("x", images=1)], frames)


def test_images_to_a_text_model_are_refused(text_policy, frames):
    with pytest.raises(PromptError, match="text-only"):
        encode_prompt(text_policy, [user("x", images=1)], frames[:1])


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32),
                                 np.zeros((8, 8, 4), np.uint8)])
def test_bad_images_are_refused(vl_policy, bad):
    with pytest.raises(PromptError, match="uint8 HxWx3"):
        encode_prompt(vl_policy, [user("x", images=1)], [bad])
