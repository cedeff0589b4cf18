"""PPO bootstraps an episode cut by a time limit or the turn cap from the value of the state it was cut in
(Episode.bootstrap); a terminated episode ends at 0; GRPO/GiGPO ignore the record (issue #16, item 4)."""
import pytest
import torch

from atlasrl.learner import losses
from atlasrl.learner.batching import episode_seqs
from atlasrl.learner.config import LearnerConfig
from atlasrl.learner.trainer import TrainBatch, Trainer

from .helpers import episode, turn

pytestmark = pytest.mark.usefixtures("process_group")
GAMMA, LAM = 0.9, 0.8


def test_gae_bootstraps_after_the_last_real_turn_and_ignores_padding():
    rewards = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.0]], dtype=torch.float64)
    values = torch.tensor([[0.2, 0.4, 9.0], [0.3, 9.0, 9.0]], dtype=torch.float64)   # 9: padding, never read
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    boot = torch.tensor([2.0, -1.0], dtype=torch.float64)
    adv, ret = losses.gae_over_turns(rewards, values, mask, GAMMA, LAM, boot)
    d1 = 1.0 + GAMMA * 2.0 - 0.4                      # episode 0, last real turn: r + gamma V(s_T) - V(s_1)
    d0 = 0.0 + GAMMA * 0.4 - 0.2
    assert adv[0, 1].item() == pytest.approx(d1)
    assert adv[0, 0].item() == pytest.approx(d0 + GAMMA * LAM * d1)
    assert adv[1, 0].item() == pytest.approx(0.5 + GAMMA * -1.0 - 0.3)
    assert adv[0, 2].item() == 0.0 and adv[1, 1:].abs().sum().item() == 0.0
    plain, _ = losses.gae_over_turns(rewards, values, mask, GAMMA, LAM)           # no bootstrap: every episode ends
    assert plain[0, 1].item() == pytest.approx(1.0 - 0.4)
    assert torch.allclose(ret, (adv + values) * mask)


def batch(with_bootstrap: bool):
    """Two one-turn episodes with reward 0: the first terminated, the second cut (with its last state's prompt)."""
    done = episode([turn([1, 2, 3], [4, 5], reward=0.0)], group="g0")
    cut = episode([turn([1, 2, 6], [4, 5], reward=0.0)], group="g0")
    if with_bootstrap:
        cut.bootstrap.CopyFrom(turn([1, 2, 6, 4, 5, 7, 8], [9], mask=[0]))
    return [done, cut]


def test_ppo_reads_the_value_of_the_cut_state_and_bootstraps_from_it(tiny_model_dir):
    trainer = Trainer(LearnerConfig(model=tiny_model_dir, algo="ppo", gamma=GAMMA, gae_lambda=LAM, batch_episodes=2))
    with torch.no_grad():   # a critic that says 1.5 everywhere
        trainer.policy.value_head.bias.fill_(1.5)
    eps = batch(with_bootstrap=True)
    boot = trainer._bootstrap_values(eps, [0, 1])
    assert set(boot) == {1} and boot[1] == pytest.approx(1.5, abs=1e-5)
    seqs = {i: episode_seqs(ep, i, 1.0) for i, ep in enumerate(eps)}
    for turns in seqs.values():
        turns[0].old_value = 1.5
    trainer._gae(eps, seqs, boot)
    assert seqs[0][0].advantage == pytest.approx(-1.5)                     # terminated: 0 - V(s_0)
    assert seqs[1][0].advantage == pytest.approx(GAMMA * 1.5 - 1.5)        # cut: 0 + gamma V(s_T) - V(s_0)
    stats = trainer.update(TrainBatch([e.SerializeToString() for e in eps], [1.0, 1.0], [0, 0]))
    # The bootstrap row trains nothing: the update saw the two turns (5 tokens each) only.
    assert torch.isfinite(torch.tensor(stats["value_loss"])) and stats["tokens"] == 10


def test_grpo_ignores_the_bootstrap_record(tiny_model_dir):
    stats = []
    for with_bootstrap in (False, True):
        trainer = Trainer(LearnerConfig(model=tiny_model_dir, algo="grpo", lr=1e-2, batch_episodes=2))
        eps = batch(with_bootstrap)
        eps[1].turns[0].reward = 1.0
        stats.append(trainer.update(TrainBatch([e.SerializeToString() for e in eps], [1.0, 1.0], [0, 0])))
    assert stats[0]["loss"] == pytest.approx(stats[1]["loss"]) and stats[0]["tokens"] == stats[1]["tokens"]
