"""A VL model's image placeholder is never sampled, and the learner's recompute masks it the same way.

A random-weights VL model writing free text sampled ``<|image_pad|>`` now and then (1 in ~1,600 tokens for the
tiny Qwen2.5-VL); the learner's VL forward reads every such id as an image slot and refused the batch ("5 image
tokens in the ids but the 1 images expand to 4"), which stopped `atlasrl up --preset maniskill-pickcube`.
Here a hook on the output layer makes the placeholder the most likely token by far: the engine must still never
write it, and its log-probs must equal the teacher-forced recompute (which would be off by ~50 nats unmasked).
"""
import numpy as np
import pytest

from atlasrl.actors.engines import EngineConfig, GenerationRequest, SamplingParams, make_engine
from atlasrl.models.logprobs import Sample, banned_response_ids, sample_logprobs
from atlasrl.models.tiny import tiny_model_path

from .conftest import requests


@pytest.fixture(scope="module")
def boosted_vl_engine(one_thread):
    engine = make_engine(EngineConfig(model=str(tiny_model_path("qwen2.5-vl", seed=0)), threads=one_thread))
    pad = engine.policy.image_token_id

    def boost(_module, _inputs, logits):
        logits[..., pad] += 50.0
        return logits

    handle = engine.policy.model.get_output_embeddings().register_forward_hook(boost)
    yield engine
    handle.remove()
    engine.close()


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_the_image_placeholder_is_never_sampled_and_logprobs_agree(boosted_vl_engine, temperature):
    engine = boosted_vl_engine
    assert banned_response_ids(engine.policy) == [engine.policy.image_token_id]
    reqs: list[GenerationRequest] = requests(n_images=1, count=4, choice_every=1)   # free text only
    outs = engine.generate(reqs, SamplingParams(max_tokens=12, temperature=temperature, seed=5))
    for o in outs:
        assert o.token_ids and engine.policy.image_token_id not in o.token_ids
    samples = [Sample(o.prompt_ids, o.token_ids, r.images) for r, o in zip(reqs, outs)]
    for o, ref in zip(outs, sample_logprobs(engine.policy, samples, temperature)):
        np.testing.assert_allclose(o.logprobs, ref, atol=1e-4)
