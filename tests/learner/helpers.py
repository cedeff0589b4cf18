"""Builders shared by the learner tests: episodes and tiny models."""
from __future__ import annotations

import uuid

from atlasrl.v1 import trajectory_pb2

VOCAB = 256


def turn(prompt, response, *, version=0, reward=0.0, logprob=-1.0, mask=None, temperature=1.0, choices=None):
    t = trajectory_pb2.TurnRecord(
        prompt_ids=list(prompt),
        response_ids=list(response),
        logprobs=[logprob] * len(response),
        loss_mask=list(mask) if mask is not None else [1] * len(response),
        reward=reward,
        env_reward=reward,
        policy_version=version,
        temperature=temperature,
        action_mode=trajectory_pb2.ACTION_MODE_CHOICE if choices else trajectory_pb2.ACTION_MODE_FREE,
    )
    for c in choices or ():
        t.choices.add(ids=list(c))
    return t


def episode(turns=None, *, group="g0", group_size=2, episode_id=None, version=0, reward=1.0, actor="test"):
    turns = turns if turns is not None else [turn([1, 2, 3], [4, 5], version=version, reward=reward)]
    return trajectory_pb2.Episode(
        episode_id=episode_id or str(uuid.uuid4()),
        actor_id=actor,
        group_id=group,
        group_size=group_size,
        turns=turns,
        policy_versions=sorted({t.policy_version for t in turns}),
    )


def tiny_qwen2(vocab=VOCAB, hidden=64, layers=2, seed=0, tie=False):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=tie,
    )
    return Qwen2ForCausalLM(cfg)
