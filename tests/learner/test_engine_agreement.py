"""The learner's recomputed log-probs equal the actor engine's, before and after a weight update.

Real transformers engine (atlasrl/actors/engines), tiny Qwen2 and Qwen2.5-VL (with an image), free
and choice mode, tempered sampling. The update travels as the learner publishes it (encode_version
-> VersionAssembler -> engine.update_weights); fp32 on the wire here so both sides hold identical
weights (bf16 in production: the decoupled-PPO weights absorb that gap).
"""
import numpy as np
import pytest
import torch

from atlasrl import codec
from atlasrl.actors.engines import make_engine
from atlasrl.actors.engines.base import GenerationRequest, SamplingParams
from atlasrl.actors.engines.config import EngineConfig
from atlasrl.learner.batching import collate, episode_seqs, pack_micro_batches
from atlasrl.learner.config import LearnerConfig
from atlasrl.learner.main import WIRE, tensor_blob
from atlasrl.learner.trainer import TrainBatch, Trainer
from atlasrl.models.chat import system, user
from atlasrl.models.tiny import tiny_model_path
from atlasrl.v1 import trajectory_pb2
from atlasrl.weight_codec import VersionAssembler, encode_version

pytestmark = pytest.mark.usefixtures("process_group")


def episodes_from(outs, images, group="g"):
    eps = []
    for k, (out, imgs) in enumerate(zip(outs, images)):
        t = trajectory_pb2.TurnRecord(
            prompt_ids=out.prompt_ids, response_ids=out.token_ids, logprobs=out.logprobs, loss_mask=[1] * len(out.token_ids),
            reward=float(k % 2), temperature=out.temperature, policy_version=out.version,
            action_mode=trajectory_pb2.ACTION_MODE_CHOICE if out.choice_token_ids else trajectory_pb2.ACTION_MODE_FREE)
        for c in out.choice_token_ids or []:
            t.choices.add(ids=c)
        t.images.extend(codec.encode(i) for i in imgs)
        eps.append(trajectory_pb2.Episode(episode_id=f"{group}{k}", group_id=group, group_size=len(outs), turns=[t]))
    return eps


def learner_logprobs(trainer, eps):
    seqs = [s for i, ep in enumerate(eps) for s in episode_seqs(ep, i, 1.0)]
    got = {}
    with torch.no_grad():
        for m in pack_micro_batches(seqs, 1 << 14):
            mb = collate(m, trainer.info)
            logp = trainer._forward(trainer.policy, mb)[0]
            for b, s in enumerate(m):
                got[s.episode] = logp[b, : len(s.response)].tolist()
    return [got[i] for i in range(len(eps))]


def requests(vl: bool):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (56, 56, 3), dtype=np.uint8) if vl else None
    imgs = [frame] if vl else []
    msgs = [system("Play."), user("Where next?", images=len(imgs))]
    reqs = [GenerationRequest(messages=msgs, images=imgs),
            GenerationRequest(messages=msgs, images=imgs, choices=["Up", "Down", "Left", "Right"]),
            GenerationRequest(messages=msgs, images=imgs, choices=["Up", "Down", "Left", "Right"])]
    return reqs, [imgs] * len(reqs)


@pytest.mark.parametrize("arch", ["qwen2", pytest.param("qwen2.5-vl", marks=pytest.mark.slow)])
def test_learner_logprobs_equal_engine_before_and_after_update(arch):
    model = str(tiny_model_path(arch, seed=0))
    engine = make_engine(EngineConfig(kind="transformers", model=model))
    trainer = Trainer(LearnerConfig(model=model, lr=1e-3, batch_episodes=3, wire_dtype="fp32"))
    reqs, images = requests(arch != "qwen2")
    params = SamplingParams(max_tokens=6, temperature=0.8, seed=1)
    eps = episodes_from(engine.generate(reqs, params), images)
    for ep, mine in zip(eps, learner_logprobs(trainer, eps)):
        assert mine == pytest.approx(list(ep.turns[0].logprobs), abs=2e-4)

    trainer.update(TrainBatch([e.SerializeToString() for e in eps], [1.0] * 3, [0] * 3))
    dtype, wire = WIRE["fp32"]
    msgs = encode_version(trainer.version, [tensor_blob(n, t, wire) for n, t in trainer.full_tensors(dtype)])
    asm = VersionAssembler()
    wv = [v for v in (asm.feed(m) for m in msgs) if v is not None][0]  # noqa: RUF015 - feeds every message, not just up to the first version
    engine.update_weights(wv.version, wv.to_torch())
    assert engine.version == 1
    eps = episodes_from(engine.generate(reqs, params), images, group="h")
    assert all(ep.turns[0].policy_version == 1 for ep in eps)
    for ep, mine in zip(eps, learner_logprobs(trainer, eps)):
        assert mine == pytest.approx(list(ep.turns[0].logprobs), abs=2e-4)


@pytest.mark.parametrize("freeze", [False, True])
def test_freeze_vision_trains_the_language_model_only(freeze):
    """learner.freeze_vision: the vision tower and merger keep their weights through an update on image turns,
    while the language model moves; without it both move (the image's gradient reaches the tower)."""
    model = str(tiny_model_path("qwen2.5-vl", seed=0))
    engine = make_engine(EngineConfig(kind="transformers", model=model))
    trainer = Trainer(LearnerConfig(model=model, lr=1e-3, batch_episodes=3, freeze_vision=freeze))
    reqs, images = requests(True)
    eps = episodes_from(engine.generate(reqs, SamplingParams(max_tokens=6, temperature=1.0, seed=1)), images)
    before = {n: t.clone() for n, t in trainer.full_tensors(torch.float32)}
    trainer.update(TrainBatch([e.SerializeToString() for e in eps], [1.0] * 3, [0] * 3))
    after = dict(trainer.full_tensors(torch.float32))
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    vision = {n for n in before if ".visual." in n or n.startswith("visual.")}
    assert vision and moved - vision                                   # the language model learnt either way
    assert (moved & vision == set()) if freeze else (vision <= moved | {n for n in vision if "norm" in n})
