"""GRPO advantages, PPO GAE over turns and the decoupled clipped loss on hand-worked numbers."""
import math

import pytest
import torch

from atlasrl.learner.losses import (
    gae_over_turns,
    grpo_advantages,
    kl_k3_sum,
    policy_loss_sum,
    return_to_go,
    step_group_advantages,
    value_loss_sum,
)


def test_grpo_advantages_hand_worked():
    returns = torch.tensor([1.0, 2.0, 0.0, 2.0, 5.0], dtype=torch.float64)
    groups = torch.tensor([0, 1, 0, 1, 1])
    adv = grpo_advantages(returns, groups, eps=0.0)
    s = 1 / math.sqrt(3)
    expected = [1 / math.sqrt(2), -s, -1 / math.sqrt(2), -s, 2 * s]
    assert adv.tolist() == pytest.approx(expected)
    assert grpo_advantages(returns, groups, std_normalize=False).tolist() == pytest.approx([0.5, -1, -0.5, -1, 2])
    same = grpo_advantages(torch.tensor([3.0, 3.0]), torch.tensor([0, 0]))
    assert same.tolist() == [0.0, 0.0]          # a group with equal rewards teaches nothing


def test_gae_over_turns_hand_worked():
    rewards = torch.tensor([[0.0, 1.0], [2.0, 0.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 0.8], [1.0, 9.0]], dtype=torch.float64)   # 9.0 sits on padding
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    adv, ret = gae_over_turns(rewards, values, mask, gamma=0.9, lam=0.5)
    # ep 0: A1 = 1 - 0.8 = 0.2; A0 = (0 + 0.9*0.8 - 0.5) + 0.9*0.5*0.2 = 0.31
    assert adv.flatten().tolist() == pytest.approx([0.31, 0.2, 1.0, 0.0])
    assert ret.flatten().tolist() == pytest.approx([0.81, 1.0, 2.0, 0.0])


def gae_loop(rewards, values, gamma, lam):
    adv, nxt_v, nxt_a = [0.0] * len(rewards), 0.0, 0.0
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * nxt_v - values[t]
        nxt_a = delta + gamma * lam * nxt_a
        adv[t], nxt_v = nxt_a, values[t]
    return adv


def test_gae_vectorised_matches_loop():
    g = torch.Generator().manual_seed(0)
    lengths = [5, 1, 3, 7]
    T = max(lengths)
    rewards = torch.randn(len(lengths), T, generator=g, dtype=torch.float64)
    values = torch.randn(len(lengths), T, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1.0] * n + [0.0] * (T - n) for n in lengths], dtype=torch.float64)
    adv, _ = gae_over_turns(rewards, values, mask, gamma=0.97, lam=0.9)
    for e, n in enumerate(lengths):
        assert adv[e, :n].tolist() == pytest.approx(gae_loop(rewards[e, :n].tolist(), values[e, :n].tolist(), 0.97, 0.9))
        assert adv[e, n:].abs().sum() == 0


def test_grpo_vectorised_matches_loop():
    g = torch.Generator().manual_seed(1)
    returns = torch.randn(12, generator=g, dtype=torch.float64)
    groups = torch.randint(0, 4, (12,), generator=g)
    adv = grpo_advantages(returns, groups, eps=0.0)
    for i in range(12):
        members = returns[groups == groups[i]]
        if len(members) > 1:
            assert adv[i].item() == pytest.approx(((returns[i] - members.mean()) / members.std()).item())


def test_clipped_ratio_and_behaviour_weight():
    lp = torch.log(torch.tensor([1.5, 1.5, 1.0, 1.0]))
    prox = torch.zeros(4)
    behav = torch.tensor([0.0, 0.0, 0.0, -math.log(10)])      # last token: pi_prox/pi_behav = 10 > cap
    adv = torch.tensor([1.0, -1.0, 2.0, 2.0])
    loss, stats = policy_loss_sum(lp, prox, behav, adv, torch.ones(4), 0.2, 0.2, behav_imp_weight_cap=5.0)
    # token 0: min(1.5, 1.2) = 1.2 (clipped); token 1: min(-1.5, -1.2) = -1.5; token 2: 2; token 3: weight 0
    assert loss.item() == pytest.approx(-(1.2 - 1.5 + 2.0))
    assert stats["clipfrac"].item() == 2 and stats["behav_weight_mean"].item() == pytest.approx(3.0)
    loss_nocap, _ = policy_loss_sum(lp, prox, behav, adv, torch.ones(4), 0.2, 0.2, behav_imp_weight_cap=None)
    assert loss_nocap.item() == pytest.approx(-(1.2 - 1.5 + 2.0 + 2.0))


def test_gradient_flows_only_through_unclipped_tokens():
    lp = torch.log(torch.tensor([1.5, 1.0])).requires_grad_()
    loss, _ = policy_loss_sum(lp, torch.zeros(2), torch.zeros(2), torch.tensor([1.0, 1.0]), torch.ones(2), 0.2, 0.2, None)
    loss.backward()
    assert lp.grad.tolist() == pytest.approx([0.0, -1.0])


def test_kl_and_value_loss():
    assert kl_k3_sum(torch.zeros(3), torch.zeros(3), torch.ones(3)).item() == 0
    d = math.log(2)
    assert kl_k3_sum(torch.tensor([0.0]), torch.tensor([d]), torch.ones(1)).item() == pytest.approx(2 - d - 1)
    v = value_loss_sum(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([2.0]), torch.ones(1), clip=0.2)
    assert v.item() == pytest.approx(0.5 * max(1.0, 1.8**2))


def test_return_to_go_and_gigpo_step_groups_hand_worked():
    assert return_to_go([0.0, 0.0, 1.0], 0.5) == [0.25, 0.5, 1.0]
    # Group 0: episodes 0 and 1 both stood on state "s"; episode 1 twice. Episode 2 (group 1) also saw "s".
    rewards = [[0.0, 1.0], [0.0, 0.0, 1.0], [0.0]]
    keys = [[b"s", b"t"], [b"s", b"s", b"t"], [b"s"]]
    adv = step_group_advantages(rewards, keys, [0, 0, 1], gamma=0.5, std_normalize=False)
    g = [0.5, 0.25, 0.5]                      # returns-to-go of the three turns on "s" in group 0
    mean = sum(g) / 3
    assert adv[0][0] == pytest.approx(g[0] - mean) and adv[1][0] == pytest.approx(g[1] - mean)
    assert adv[1][1] == pytest.approx(g[2] - mean)
    assert adv[0][1] == pytest.approx(0.0) and adv[1][2] == pytest.approx(0.0)   # "t": equal returns
    assert adv[2] == [0.0]                    # alone in its group's step group: no step signal
    normed = step_group_advantages(rewards, keys, [0, 0, 1], gamma=0.5, eps=0.0)
    std = torch.tensor(g, dtype=torch.float64).std().item()
    assert normed[1][0] == pytest.approx((g[1] - mean) / std)
