"""Potential-based shaping and the learner's advantages (issue #16, item 5).

The memory shapes rewards with F_t = gamma * Phi(s_t+1) - Phi(s_t), gamma the algorithm's discount
(``shaping_discount``), Phi frozen per GRPO group and Phi = 0 once the episode is over (terminal, truncated by
the env, or cut by the actor's turn cap). Then:

- GRPO: the episode sum telescopes to R - Phi(s_0); the members of a group share s_0 (one seed) and Phi, so
  group-normalised advantages are unchanged.
- GiGPO: the episode part leaves shaping out; a step return-to-go becomes G_t - Phi(s_t), and the turns of a
  step group share s_t, so the step advantages are unchanged too.
- PPO: GAE against a critic's values sees F_t turn by turn: its advantages change (that is where shaping can
  speed learning up).

The advantages are computed by the trainer's own methods (``Trainer._group_advantages`` / ``Trainer._gae``) on
episodes built here; the last test drives the actor's shaping code over an episode cut by the turn cap.
"""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from atlasrl.learner.batching import episode_seqs
from atlasrl.learner.config import LearnerConfig, shaping_discount
from atlasrl.learner.trainer import Trainer
from atlasrl.v1 import trajectory_pb2

from .helpers import episode, turn

CELLS = 9                  # a 3x3 world: states are cells, the start is cell 0


def potential(seed: int) -> dict[int, float]:
    rng = random.Random(seed)
    return {c: rng.uniform(-2.0, 2.0) for c in range(CELLS)}


def walk(rng: random.Random, length: int) -> list[int]:
    """States s_0 .. s_T of one episode (s_0 the shared start); few cells, so step groups form."""
    cells = [0]
    for _ in range(length):
        cells.append(rng.randrange(CELLS))
    return cells


def build(states: list[int], env_rewards: list[float], group: str, phi: dict[int, float] | None, gamma: float,
          *, last_potential_counts: bool = False) -> trajectory_pb2.Episode:
    """An episode whose turn t acted on states[t] (its GiGPO state key) and led to states[t+1].

    With ``phi``, each turn carries F_t = gamma * Phi(s_t+1) - Phi(s_t), Phi = 0 after the last turn (the
    episode is over, however it ended); ``last_potential_counts`` keeps Phi(s_T) instead: the leak."""
    turns = []
    for t, r in enumerate(env_rewards):
        f = 0.0
        if phi is not None:
            over = t == len(env_rewards) - 1 and not last_potential_counts
            f = gamma * (0.0 if over else phi[states[t + 1]]) - phi[states[t]]
        tr = turn([1, 2, 3, 10 + states[t]], [20 + t % 3], reward=r + f)
        tr.env_reward, tr.shaping_reward = r, f
        tr.state_key = b"cell-%d" % states[t]
        turns.append(tr)
    return episode(turns, group=group, group_size=4)


def batch(seed: int, gamma: float, shaped: bool, *, cut_by_turn_cap: bool = False, leak: bool = False):
    """Three GRPO groups of four episodes (one Phi per group). Episodes end in success (reward 1 on the last
    turn), failure or a timeout; ``cut_by_turn_cap``: every episode of group 2 is cut at 5 turns, not over."""
    rng = random.Random(seed)
    episodes = []
    for g in range(3):
        phi = potential(1000 * seed + g) if shaped else None
        for _ in range(4):
            length = 5 if cut_by_turn_cap and g == 2 else rng.randint(2, 7)
            states = walk(rng, length)
            rewards = [rng.choice([0.0, 0.0, -0.1]) for _ in range(length)]
            if not (cut_by_turn_cap and g == 2):
                rewards[-1] += rng.choice([0.0, 1.0])
            episodes.append(build(states, rewards, f"g{g}", phi, gamma,
                                  last_potential_counts=leak and cut_by_turn_cap and g == 2))
    return episodes


def advantages(algo: str, episodes, *, std_normalize: bool = True, values_seed: int = 0) -> list[list[float]]:
    """Per episode, per turn: the advantages the trainer gives (its own methods, no model needed)."""
    cfg = LearnerConfig(model="unused", algo=algo, grpo_std_normalize=std_normalize)
    seqs = {i: episode_seqs(ep, i, 1.0) for i, ep in enumerate(episodes)}
    trainer = SimpleNamespace(cfg=cfg)
    if algo == "ppo":
        rng = random.Random(values_seed)               # a critic's values, the same with and without shaping
        for turns in seqs.values():
            for s in turns:
                s.old_value = rng.uniform(-1.0, 1.0)
        Trainer._gae(trainer, episodes, seqs)
    else:
        Trainer._group_advantages(trainer, episodes, list(seqs), seqs)
    return [[s.advantage for s in seqs[i]] for i in range(len(episodes))]


def discount(algo: str) -> float:
    cfg = LearnerConfig(model="unused", algo=algo)
    return shaping_discount(algo, cfg.step_gamma)


def assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        assert x == pytest.approx(y, abs=1e-9)


@pytest.mark.parametrize("algo", ["grpo", "gigpo"])
@pytest.mark.parametrize("std_normalize", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_group_advantages_are_unchanged_by_shaping(algo, std_normalize, seed):
    gamma = discount(algo)
    plain = advantages(algo, batch(seed, gamma, shaped=False), std_normalize=std_normalize)
    shaped_eps = batch(seed, gamma, shaped=True)
    assert any(abs(t.shaping_reward) > 0.1 for ep in shaped_eps for t in ep.turns)
    assert_same(advantages(algo, shaped_eps, std_normalize=std_normalize), plain)
    # Shaped with the other algorithm's discount, the terms no longer telescope where this algorithm sums them:
    # the advantages move (why ``shaping_discount`` exists, and proof that this check can fail).
    wrong = 1.0 if gamma != 1.0 else discount("gigpo")
    moved = advantages(algo, batch(seed, wrong, shaped=True), std_normalize=std_normalize)
    assert any(abs(x - y) > 1e-6 for a, b in zip(moved, plain) for x, y in zip(a, b))
    if algo == "gigpo":                                # the step part is exercised: shared states exist
        cfg = LearnerConfig(model="unused", algo="gigpo", step_adv_weight=0.0)
        seqs = {i: episode_seqs(ep, i, 1.0) for i, ep in enumerate(shaped_eps)}
        Trainer._group_advantages(SimpleNamespace(cfg=cfg), shaped_eps, list(seqs), seqs)
        episode_only = [[s.advantage for s in seqs[i]] for i in range(len(shaped_eps))]
        assert any(abs(x - y) > 1e-6 for a, b in zip(plain, episode_only) for x, y in zip(a, b))


@pytest.mark.parametrize("algo", ["grpo", "gigpo"])
def test_an_episode_cut_by_the_turn_cap_leaks_no_last_potential(algo):
    """Free mode: invalid replies are no-op turns, so the actor's turn cap, not the env, ends the episode. Its
    last shaping term must use Phi = 0 like any ending; the advantages are then unchanged. Keeping Phi(s_T)
    (the leak) adds Phi(s_T) to that episode's return, and the advantages move: the check can fail."""
    gamma = discount(algo)
    plain = advantages(algo, batch(7, gamma, shaped=False, cut_by_turn_cap=True))
    assert_same(advantages(algo, batch(7, gamma, shaped=True, cut_by_turn_cap=True)), plain)
    leaked = advantages(algo, batch(7, gamma, shaped=True, cut_by_turn_cap=True, leak=True))
    assert any(abs(x - y) > 1e-3 for a, b in zip(leaked, plain) for x, y in zip(a, b))


@pytest.mark.parametrize("seed", range(3))
def test_ppo_advantages_change_with_shaping(seed):
    gamma = discount("ppo")
    plain = advantages("ppo", batch(seed, gamma, shaped=False), values_seed=seed)
    shaped = advantages("ppo", batch(seed, gamma, shaped=True), values_seed=seed)
    changed = sum(abs(x - y) > 1e-3 for a, b in zip(plain, shaped) for x, y in zip(a, b))
    assert changed > len([x for a in plain for x in a]) // 2


def test_ppo_shaping_is_the_telescoped_potential_with_lambda_one():
    """With lambda = 1 (and gamma 1), GAE is the return-to-go minus the value, so shaping moves each turn's
    advantage by exactly -Phi(s_t): it ranks the states, which a critic-free group baseline cancels."""
    phi = potential(3)
    states, rewards = [0, 4, 5, 8, 2], [0.0, -0.1, 0.0, 1.0]
    plain, shaped = build(states, rewards, "g", None, 1.0), build(states, rewards, "g", phi, 1.0)
    cfg = LearnerConfig(model="unused", algo="ppo", gamma=1.0, gae_lambda=1.0)
    out = []
    for ep in (plain, shaped):
        seqs = {0: episode_seqs(ep, 0, 1.0)}
        for s in seqs[0]:
            s.old_value = 0.25
        Trainer._gae(SimpleNamespace(cfg=cfg), [ep], seqs)
        out.append([s.advantage for s in seqs[0]])
    for t, (a, b) in enumerate(zip(*out)):
        assert b - a == pytest.approx(-phi[states[t]], abs=1e-9)


# --- the actor's side: shaping of an episode cut by the turn cap ---------------------------

def test_actor_shaping_of_an_episode_cut_by_the_turn_cap_telescopes_to_minus_phi_s0():
    """The actor's own code path (RolloutLoop._shaping -> EpisodeAdvice.shape -> EpisodeShaper), free mode: an
    episode of no-op turns (invalid replies: the env is not stepped) and moves, cut by max_turns while the env
    is neither terminated nor truncated. Its shaping must sum to -Phi(s_0) (gamma 1, as for GRPO)."""
    import numpy as np

    from atlasrl.actors.episode import EpisodeBuffer
    from atlasrl.actors.memory_hints import EpisodeAdvice
    from atlasrl.actors.rollout import RolloutLoop, _noop_observation
    from atlasrl.clients.memory import EpisodeShaper
    from atlasrl.envserver import registry
    from atlasrl.envserver.convert import observation_to_proto, spec_to_proto

    env = registry.make("frozenlake", {"hole_prob": "0.0"}, seed=0)      # no holes: nothing ends the episode
    spec = spec_to_proto(env.spec_info())
    rng = np.random.default_rng(0)
    danger, affinity = rng.random((4, 4)), rng.random((4, 4))
    shaper = EpisodeShaper(danger, affinity, lambda_affinity=1.0, lambda_danger=1.0, gamma=1.0)
    first = observation_to_proto(env.text_reset(seed=0))[0]
    slot = SimpleNamespace(advice=EpisodeAdvice(shaper=shaper),
                           episode=EpisodeBuffer("e", group_id="g", seed=0, group_size=1, spec=spec,
                                                 first_obs=first, max_turns=4))
    loop = SimpleNamespace(cfg=SimpleNamespace(memory_shaping=True, shaping_scale=1.0))
    for reply in ("Right", None, "Down", None):                 # None: an invalid reply, a no-op turn
        obs = (observation_to_proto(env.text_step(reply))[0] if reply is not None
               else _noop_observation(slot.episode.last_obs))
        f = RolloutLoop._shaping(loop, slot, obs)               # as RolloutLoop._turn: before add_turn
        slot.episode.add_turn(trajectory_pb2.TurnRecord(reward=f, shaping_reward=f), obs)
    ep = slot.episode
    assert ep.done and ep.terminal_cause == "timeout" and not ep.last_obs.truncated and not ep.last_obs.terminated
    s0 = (first.agent.row, first.agent.col)
    sT = (ep.last_obs.agent.row, ep.last_obs.agent.col)
    assert shaper.potential(sT) != pytest.approx(0.0)              # a leak would show
    assert sum(t.shaping_reward for t in ep.turns) == pytest.approx(-shaper.potential(s0), abs=1e-9)
