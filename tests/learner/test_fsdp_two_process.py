"""Two gloo processes with FSDP2: the loss falls on a fixed batch, and the update equals one process's."""
import tempfile

import pytest
import torch
import torch.multiprocessing as mp

from atlasrl.learner.batching import collate, episode_seqs
from atlasrl.learner.config import LearnerConfig
from atlasrl.learner.policy import PolicyModel
from atlasrl.learner.trainer import TrainBatch, Trainer
from atlasrl.models.load import load_policy

from .fsdp_worker import full_grads, train_on_fixed_batch
from .helpers import episode, turn


def on_policy_batch(model_dir) -> TrainBatch:
    """GRPO groups whose behaviour log-probs are the initial model's own (as a fresh actor's would be)."""
    g = torch.Generator().manual_seed(0)
    eps = []
    for k in range(6):
        prompt = torch.randint(1, 200, (int(torch.randint(4, 12, (1,), generator=g)),), generator=g).tolist()
        response = torch.randint(1, 200, (int(torch.randint(2, 6, (1,), generator=g)),), generator=g).tolist()
        eps.append(episode([turn(prompt, response, reward=float(k % 3))], group=f"g{k // 3}", group_size=3))
    info = load_policy(model_dir)
    policy = PolicyModel(info.model)
    for ep in eps:
        mb = collate(episode_seqs(ep, 0, 1.0), info)
        with torch.no_grad():
            logp = policy(mb["tf"], mb["temperature"])[0][0]
        ep.turns[0].logprobs[:] = logp.tolist()
    return TrainBatch([e.SerializeToString() for e in eps], [1.0] * len(eps), [0] * len(eps))


@pytest.mark.slow
def test_two_process_fsdp_loss_falls_and_matches_one_process(tiny_model_dir, tmp_path, process_group):
    # Fixed behaviour log-probs as the proximal policy, so the surrogate loss is comparable across updates.
    cfg = LearnerConfig(model=tiny_model_dir, lr=2e-3, batch_episodes=6, recompute_proximal=False,
                        behav_imp_weight_cap=None, clip_eps=0.2, clip_eps_high=5.0, micro_batch_tokens=32)
    batch = on_policy_batch(tiny_model_dir)
    torch.save(batch, tmp_path / "batch.pt")
    store = tempfile.mktemp(prefix="atlasrl-fsdp-")
    mp.spawn(train_on_fixed_batch, args=(2, store, cfg.model_dump_json(), str(tmp_path / "batch.pt"), str(tmp_path), 3), nprocs=2, join=True)
    result = torch.load(tmp_path / "result.pt")
    losses = result["losses"]
    assert result["version"] == 3
    assert losses[-1] < losses[0] - 1e-3, losses
    # The same update in this one process: token-level normalisation across ranks gives the same gradients
    # (episodes split over ranks and micro-batches differently, so only float rounding differs).
    single = Trainer(cfg)
    single.update(batch)
    one, two = full_grads(single), torch.load(tmp_path / "first_grads.pt")
    for name, g in one.items():
        torch.testing.assert_close(two[name], g, rtol=1e-3, atol=1e-6, msg=lambda m: f"{name}: {m}")  # noqa: B023 - the message is built within this iteration
