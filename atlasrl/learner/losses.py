"""GRPO and PPO maths, top to bottom, with the names of the papers.

Advantages are per turn (one number for every response token of a turn):
- GRPO: the episode return R_i, normalised inside its group,
  A_i = (R_i - mean_g R) / (std_g R + eps)  (std optional: Dr. GRPO keeps it off).
- GiGPO (Feng et al. 2025, "Group-in-Group Policy Optimization for LLM Agent
  Training"): the GRPO episode advantage plus a step advantage. Turns of one
  group that acted on the same env state (an "anchor state") form a step group;
  each turn's discounted return-to-go G_t = sum_k gamma^k r_{t+k} is normalised
  inside its step group, A = A_episode + omega * (G_t - mean_s G) / (std_s G + eps).
  It gives every turn its own credit without a critic: in a group playing one
  map, the turns that stood on the same cell are compared by where they led.
- PPO: GAE over the turns of an episode, with a value head read at each turn's
  last prompt token: delta_t = r_t + gamma V_{t+1} - V_t,  A_t = delta_t + gamma lambda A_{t+1}.

The policy loss is AReaL's decoupled PPO objective: the ratio is taken against
the *proximal* policy (the current weights before this update, recomputed by
the learner) and the gap between proximal and *behaviour* policy (the stale
weights an actor sampled with) is corrected by an importance weight
w = pi_prox / pi_behav; tokens with w above ``behav_imp_weight_cap`` get no
weight (AReaL's truncation). Token-level normalisation: every function returns
*sums* over tokens; the caller divides by the number of loss tokens of the whole
global batch so long and short responses weigh the same per token.
"""
from __future__ import annotations

import torch


def grpo_advantages(returns: torch.Tensor, group_index: torch.Tensor, std_normalize: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """returns [E], group_index [E] (0..G-1) -> advantages [E]."""
    groups = int(group_index.max()) + 1 if group_index.numel() else 0
    count = torch.zeros(groups, dtype=returns.dtype).index_add_(0, group_index, torch.ones_like(returns))
    mean = torch.zeros(groups, dtype=returns.dtype).index_add_(0, group_index, returns) / count
    centred = returns - mean[group_index]
    if not std_normalize:
        return centred
    var = torch.zeros(groups, dtype=returns.dtype).index_add_(0, group_index, centred**2) / (count - 1).clamp_min(1)
    return centred / (var.sqrt()[group_index] + eps)


def return_to_go(rewards: list[float], gamma: float) -> list[float]:
    """G_t = r_t + gamma * G_{t+1} over one episode's turns."""
    out, acc = [0.0] * len(rewards), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = rewards[t] + gamma * acc
        out[t] = acc
    return out


def step_group_advantages(rewards: list[list[float]], state_keys: list[list[bytes]], group_index: list[int],
                          gamma: float, std_normalize: bool = True, eps: float = 1e-6) -> list[list[float]]:
    """GiGPO step advantages: per episode, per turn; 0 for a turn whose state no other turn of its group shares.

    rewards[e][t] and state_keys[e][t] per turn; group_index[e] the episode's GRPO group.
    """
    returns = [return_to_go(r, gamma) for r in rewards]
    buckets: dict[tuple[int, bytes], list[tuple[int, int]]] = {}
    for e, keys in enumerate(state_keys):
        for t, key in enumerate(keys):
            buckets.setdefault((group_index[e], key), []).append((e, t))
    out = [[0.0] * len(r) for r in rewards]
    for members in buckets.values():
        if len(members) < 2:
            continue
        g = torch.tensor([returns[e][t] for e, t in members], dtype=torch.float64)
        centred = g - g.mean()
        if std_normalize:
            centred = centred / (g.std(unbiased=True) + eps)
        for (e, t), a in zip(members, centred.tolist()):
            out[e][t] = a
    return out


def gae_over_turns(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float,
                   bootstrap: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """rewards, values, mask: [E, T] (turns right-padded, mask 1 on real turns).

    ``bootstrap`` [E]: the value of the state after each episode's last real turn,
    V(s_T) for an episode cut by a time limit, 0 for one that terminated (the
    default: every episode terminal). Returns (advantages, returns), both [E, T],
    zero on padding.
    """
    E, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    lastgaelam = torch.zeros(E, dtype=rewards.dtype)
    tail = torch.zeros(E, dtype=rewards.dtype) if bootstrap is None else bootstrap.to(rewards.dtype)
    for t in reversed(range(T)):
        next_real = mask[:, t + 1] if t + 1 < T else torch.zeros(E, dtype=rewards.dtype)
        # After the last real turn the next state's value is the bootstrap (a cut, not an end).
        next_value = (values[:, t + 1] * next_real if t + 1 < T else 0.0) + tail * (1.0 - next_real)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        lastgaelam = (delta + gamma * lam * next_real * lastgaelam) * mask[:, t]
        advantages[:, t] = lastgaelam
    return advantages, (advantages + values) * mask


def policy_loss_sum(
    logp: torch.Tensor,
    prox_logp: torch.Tensor,
    behav_logp: torch.Tensor,
    advantages: torch.Tensor,
    token_weight: torch.Tensor,
    clip_low: float,
    clip_high: float,
    behav_imp_weight_cap: float | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Decoupled clipped surrogate; all args [N] over response tokens.

    token_weight = loss_mask x episode staleness weight. Returns the weighted
    sum of per-token losses and detached sums for the diagnostics.
    """
    logratio = logp - prox_logp
    ratio = torch.exp(logratio)
    surr1 = ratio * advantages
    surr2 = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * advantages
    pg = -torch.min(surr1, surr2)
    weight = token_weight
    if behav_imp_weight_cap is not None:
        behav_w = torch.exp(prox_logp - behav_logp)
        behav_w = torch.where(behav_w <= behav_imp_weight_cap, behav_w, torch.zeros_like(behav_w))
        weight = weight * behav_w.detach()
    else:
        behav_w = torch.ones_like(logp)
    live = (token_weight > 0).to(logp.dtype)
    with torch.no_grad():
        clipped = ((ratio < 1.0 - clip_low) | (ratio > 1.0 + clip_high)).to(logp.dtype)
        stats = {
            "clipfrac": (clipped * live).sum(),
            "approx_kl": (((ratio - 1) - logratio) * live).sum(),
            "behav_weight_mean": (behav_w * live).sum(),
        }
    return (pg * weight).sum(), stats


def kl_k3_sum(logp: torch.Tensor, ref_logp: torch.Tensor, token_weight: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(pi || ref), unbiased and >= 0: e^(ref-logp) - (ref-logp) - 1."""
    d = ref_logp - logp
    return ((torch.exp(d) - d - 1) * token_weight).sum()


def value_loss_sum(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, weight: torch.Tensor, clip: float | None) -> torch.Tensor:
    """0.5 * max((V - R)^2, (clip(V, V_old +- c) - R)^2), per turn, weighted sum."""
    loss = (values - returns) ** 2
    if clip is not None:
        clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        loss = torch.max(loss, (clipped - returns) ** 2)
    return 0.5 * (loss * weight).sum()
