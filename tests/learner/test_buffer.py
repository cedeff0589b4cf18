"""Episode validation, dedup, GRPO grouping and the staleness gate (no gRPC)."""
import pytest

from atlasrl.learner.buffer import BufferFull, EpisodeBuffer
from atlasrl.learner.config import LearnerConfig
from atlasrl.learner.validation import Malformed, Unacceptable

from .helpers import VOCAB, episode, turn


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def make(algo="grpo", clock=None, **kw):
    cfg = LearnerConfig(model="x", algo=algo, batch_episodes=2, buffer_capacity=kw.pop("capacity", 8), **kw)
    return EpisodeBuffer(cfg, VOCAB, clock=clock or Clock())


def test_dedup_counts_once():
    buf = make()
    ep = episode()
    assert buf.add(ep, 0) == "accepted"
    assert buf.add(ep, 0) == "duplicate"
    assert buf.buffered == 1


def test_grpo_takes_whole_groups_in_order():
    buf = make()
    a1, b1, a2 = episode(group="a"), episode(group="b"), episode(group="a")
    for ep in (a1, b1, a2):
        buf.add(ep, 0)
    batch = buf.take(2, 0, timeout=0)
    assert [b.episode.episode_id for b in batch] == [a1.episode_id, a2.episode_id]
    assert buf.take(2, 0, timeout=0) is None          # group b is incomplete
    assert buf.buffered == 1 and buf.consumed == 2


def test_incomplete_group_released_after_timeout_or_dropped():
    clock = Clock()
    buf = make(clock=clock, group_timeout_s=10)
    buf.add(episode(group="a", group_size=4), 0)
    buf.add(episode(group="a", group_size=4), 0)
    buf.add(episode(group="lonely", group_size=4), 0)
    assert buf.take(2, 0, timeout=0) is None
    clock.t = 11
    assert len(buf.take(2, 0, timeout=0)) == 2
    assert buf.dropped_incomplete == 1 and buf.buffered == 0


def test_a_restarted_actor_closes_the_groups_its_earlier_process_left_incomplete():
    """CloseGroups: the killed process's unfinished members never come, so its groups are settled now, not after
    group_timeout_s: 2+ members train as they are, a lone member is dropped; other actors' groups wait on."""
    drops = []
    buf = make(group_timeout_s=120)
    buf.on_drop = lambda reason, n: drops.append((reason, n))
    two_of_three = [episode(group="a0/seed-1", group_size=3, actor="a0") for _ in range(2)]
    lone = episode(group="a0/seed-2", group_size=2, actor="a0")
    other = episode(group="a1/seed-1", group_size=2, actor="a1")
    for ep in (*two_of_three, lone, other):
        buf.add(ep, 0)
    assert buf.take(2, 0, timeout=0) is None and buf.ready == 0
    assert buf.close_groups("a0") == (1, 1)
    assert drops == [("incomplete_group", 1)] and buf.buffered == 3 and buf.ready == 2
    assert [b.episode.episode_id for b in buf.take(2, 0, timeout=0)] == [e.episode_id for e in two_of_three]
    assert buf.close_groups("a0") == (0, 0) and buf.buffered == 1          # a1's group still waits for its member
    assert buf.add(episode(group="a1/seed-1", group_size=2, actor="a1"), 0) == "accepted"
    assert len(buf.take(2, 0, timeout=0)) == 2


def test_close_groups_is_a_no_op_without_groups():
    buf = make(algo="ppo")
    buf.add(episode(actor="a0"), 0)
    assert buf.close_groups("a0") == (0, 0) and buf.ready == 1


def test_staleness_gate_on_arrival_and_on_take():
    buf = make(max_staleness=1)
    with pytest.raises(Unacceptable, match="2 versions stale"):
        buf.add(episode(version=1), 3)
    with pytest.raises(Unacceptable, match="newer than the learner"):
        buf.add(episode(version=5), 3)
    for v in (2, 3, 3):
        buf.add(episode(group="a", group_size=3, version=v), 3)
    batch = buf.take(1, 4, timeout=0)      # learner moved on: the v2 episode is now 2 stale
    assert [b.episode.turns[0].policy_version for b in batch] == [3, 3] and buf.dropped_stale == 1


def test_member_refused_on_arrival_completes_its_group_without_a_timeout():
    """A stale member is refused for good: its group must not wait group_timeout_s for it (that stalled `up`)."""
    buf = make(max_staleness=1, group_timeout_s=1e9)
    buf.add(episode(group="a", group_size=3, version=3), 3)
    buf.add(episode(group="a", group_size=3, version=3), 3)
    stale = episode(group="a", group_size=3, version=1)
    with pytest.raises(Unacceptable, match="stale"):
        buf.add(stale, 3)
    assert len(buf.take(2, 3, timeout=0)) == 2
    assert buf.buffered == 0
    assert buf.add(stale, 3) == "duplicate"   # a resend does not shrink the next group of that id twice


def test_ready_counts_only_trainable_groups():
    clock = Clock()
    buf = make(clock=clock, group_timeout_s=10)
    for group, n in (("full", 2), ("partial", 1), ("pair", 2)):
        for _ in range(n):
            buf.add(episode(group=group, group_size=2 if group != "pair" else 3), 0)
    assert buf.buffered == 5 and buf.ready == 2        # "partial" and "pair" still wait for members
    clock.t = 11
    assert buf.ready == 4                               # timed out: "pair" trains with 2 of 3, a lone one never


def test_downweight_policy_keeps_stale_with_weight():
    buf = make(algo="ppo", max_staleness=1, stale_policy="downweight", stale_weight=0.5)
    buf.add(episode(version=0), 3)        # lag 3: accepted, weight 0.5 ** 2
    (b,) = buf.take(1, 3, timeout=0)
    assert b.lag == 3 and b.weight == pytest.approx(0.25)


def test_full_buffer_defers():
    buf = make(algo="ppo", capacity=2)
    buf.add(episode(), 0)
    buf.add(episode(), 0)
    with pytest.raises(BufferFull):
        buf.add(episode(), 0)


@pytest.mark.parametrize(
    "ep, reason",
    [
        (episode([]), "no turns"),
        (episode(group=""), "group_id is empty"),
        (episode([turn([1], [])]), "response_ids is empty"),
        (episode([turn([1], [2], mask=[1, 1])]), "2 loss_mask entries for 1"),
        (episode([turn([1], [VOCAB])]), "outside the vocabulary"),
        (episode([turn([1], [2], logprob=0.5)]), "not a finite value <= 0"),
        (episode([turn([1], [2], temperature=-1)]), "temperature"),
        (episode([turn([1], [2, 3], choices=[[5], [6]])]), "not one of the 2 choices"),
    ],
)
def test_malformed_episodes_name_the_problem(ep, reason):
    with pytest.raises(Malformed, match=reason):
        make().add(ep, 0)


def test_empty_episode_id():
    ep = episode()
    ep.episode_id = ""
    with pytest.raises(Malformed, match="episode_id is empty"):
        make().add(ep, 0)


def test_mismatched_logprob_length():
    ep = episode()
    del ep.turns[0].logprobs[-1]
    with pytest.raises(Malformed, match="1 logprobs for 2 response tokens"):
        make().add(ep, 0)


def test_state_dict_round_trip_keeps_seen_and_pending():
    buf = make()
    seen = episode(group="a")
    buf.add(seen, 0)
    buf.add(episode(group="a"), 0)
    buf.take(2, 0, timeout=0)
    pending = episode(group="b")
    buf.add(pending, 0)
    other = make()
    other.load_state_dict(buf.state_dict())
    assert other.add(seen, 0) == "duplicate"
    assert other.buffered == 1 and other.consumed == 2
    other.add(episode(group="b"), 0)
    assert pending.episode_id in {b.episode.episode_id for b in other.take(2, 0, timeout=0)}
