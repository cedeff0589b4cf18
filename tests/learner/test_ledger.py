"""The learner's episode ledger: acknowledged episodes survive a crash, rolled-back updates re-train once, lineage.

A "crash" here is what a SIGKILL leaves: the ledger's connection is dropped without any closing call,
and a new buffer + ledger open the same file, as a restarted learner does.
"""
import sqlite3

import pytest

from atlasrl.learner.buffer import EpisodeBuffer
from atlasrl.learner.config import LearnerConfig
from atlasrl.learner.ledger import EpisodeLedger, next_version
from atlasrl.learner.metrics import LearnerMetrics
from atlasrl.learner.trajectory_service import TrajectoryServicer
from atlasrl.learner.validation import Malformed, Unacceptable

from .helpers import VOCAB, episode, turn


def cfg(**kw):
    return LearnerConfig(model="unused", batch_episodes=2, max_staleness=2, group_timeout_s=3600, **kw)


def grp(name, version=0, n=2):
    return [episode([turn([1, 2, 3], [4, 5 + i], version=version)], group=name, group_size=n) for i in range(n)]


def restart(path, c=None):
    """A new learner process on the same ledger file."""
    ledger = EpisodeLedger(path)
    return EpisodeBuffer(c or cfg(), VOCAB, ledger=ledger), ledger


def rows(path):
    db = sqlite3.connect(path)
    try:
        return {i: (s, r, v) for i, s, r, v in db.execute("SELECT episode_id, state, reason, update_version FROM episodes")}
    finally:
        db.close()


def test_acknowledged_episodes_survive_a_crash_and_resends_are_duplicates(tmp_path):
    path = tmp_path / "ledger.sqlite"
    buf, _ = restart(path)
    eps = grp("a") + grp("b")
    assert [buf.add(e, 0) for e in eps] == ["accepted"] * 4
    # crash: nothing closed. The restarted learner gets every acknowledged episode back, in arrival order.
    buf2, ledger2 = restart(path)
    pending = ledger2.restore(0)
    assert [p for p in pending] == [e.SerializeToString() for e in eps]
    buf2.restore_pending(pending)
    assert buf2.buffered == 4
    # an actor that never saw the ack resends: known from disk, not buffered twice
    assert buf2.add(eps[0], 0) == "duplicate"
    assert buf2.buffered == 4


def test_updates_lost_in_a_crash_are_rolled_back_and_trained_again_once(tmp_path):
    path = tmp_path / "ledger.sqlite"
    buf, ledger = restart(path)
    for e in grp("a") + grp("b") + grp("c"):
        buf.add(e, 0)
    first = buf.take(2, 0, timeout=1)
    ledger.trained([b.episode.episode_id for b in first], 1)       # update -> version 1
    ledger.checkpointed(1)                                          # checkpoint of version 1 complete
    second = buf.take(2, 1, timeout=1)
    ledger.trained([b.episode.episode_id for b in second], 2)      # update -> version 2, never checkpointed
    ledger.publishing(2)
    # crash; restart from the checkpoint of version 1
    buf2, ledger2 = restart(path)
    pending = ledger2.restore(1)
    third = buf.take(2, 1, timeout=1)
    ids = {b.episode.episode_id for b in second + third}
    assert len(pending) == 4
    buf2.restore_pending(pending)
    again = buf2.take(4, 2, timeout=1)
    assert {b.episode.episode_id for b in again} == ids
    ledger2.trained([b.episode.episode_id for b in again], 3)
    db = sqlite3.connect(path)
    # every episode has exactly one train event that was not rolled back
    live = dict(db.execute("SELECT episode_id, COUNT(*) FROM train_events WHERE rolled_back=0 GROUP BY episode_id"))
    assert sorted(live.values()) == [1] * 6
    rolled = [i for (i,) in db.execute("SELECT episode_id FROM train_events WHERE rolled_back=1")]
    assert sorted(rolled) == sorted(b.episode.episode_id for b in second)
    assert ledger2.counts()["trained"] == 6 and ledger2.counts()["rolled_back"] == 2


def test_checkpointed_bytes_are_forgotten_and_a_restore_never_needs_them(tmp_path):
    path = tmp_path / "ledger.sqlite"
    buf, ledger = restart(path)
    for e in grp("a"):
        buf.add(e, 0)
    ledger.trained([b.episode.episode_id for b in buf.take(2, 0, timeout=1)], 1)
    ledger.checkpointed(1)
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM episodes WHERE payload IS NOT NULL").fetchone()[0] == 0
    assert EpisodeLedger(path).restore(1) == []


def test_refusals_and_drops_are_recorded_with_their_reason(tmp_path):
    path = tmp_path / "ledger.sqlite"
    buf, ledger = restart(path)
    bad = episode([turn([1, 2, 3], [VOCAB + 5], version=0)], group="x")
    with pytest.raises(Malformed):
        buf.add(bad, 0)
    with pytest.raises(Unacceptable) as newer:
        buf.add(episode([turn([1], [2], version=9)], group="y"), 3)
    assert newer.value.reason == "unknown_version"
    with pytest.raises(Unacceptable) as stale:
        buf.add(episode([turn([1], [2], version=0)], group="z"), 3)
    assert stale.value.reason == "stale"
    waiting = grp("w")
    for e in waiting:
        buf.add(e, 0)
    assert buf.take(2, 5, timeout=0) is None      # the learner moved on: both members too stale now
    r = rows(path)
    assert r[bad.episode_id][:2] == ("refused", "invalid")
    assert sorted(x[1] for x in r.values() if x[0] == "refused") == \
        sorted(["invalid", "unknown_version", "stale", "dropped_stale", "dropped_stale"])
    c = ledger.counts()
    assert c["refused"] == 5 and c["refused:dropped_stale"] == 2 and c["buffered"] == 0


def test_lineage_never_reuses_a_published_version(tmp_path):
    ledger = EpisodeLedger(tmp_path / "ledger.sqlite")
    assert ledger.published_version() == -1
    for v in (0, 1, 2, 7):
        ledger.publishing(v)
    ledger.publishing(3)                      # never goes back
    assert EpisodeLedger(tmp_path / "ledger.sqlite").published_version() == 7
    assert next_version(5, 7) == 8            # versions 6, 7 died with the crash: restored weights are 8
    assert next_version(7, 7) == 7            # clean stop: the last checkpoint is the last version
    assert next_version(0, -1) == 0


async def test_rejections_carry_a_reason_and_the_log_is_summarised(tmp_path, caplog):
    buf, _ = restart(tmp_path / "ledger.sqlite")
    svc = TrajectoryServicer(buf, lambda: 5, LearnerMetrics())
    stale = [episode([turn([1], [2], version=0)], group=f"s{i}") for i in range(50)]

    async def stream():
        for e in stale:
            yield e

    with caplog.at_level("INFO", logger="atlasrl.learner.trajectory"):
        ack = await svc.Push(stream(), None)
    assert [r.reason for r in ack.rejected] == ["stale"] * 50
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) <= 2   # not one line per episode


async def test_a_cut_upload_keeps_what_arrived_and_the_resend_adds_only_the_rest(tmp_path):
    """A Push stream cut after 3 of 5 episodes (connection lost): the 3 are on disk, the caller got no ack and
    resends all 5; the learner acknowledges the 3 as duplicates and adds the 2, once each."""
    buf, ledger = restart(tmp_path / "ledger.sqlite")
    svc = TrajectoryServicer(buf, lambda: 0, LearnerMetrics())
    eps = [episode([turn([1], [2 + i], version=0)], group=f"g{i}", group_size=1) for i in range(5)]

    async def cut():
        for e in eps[:3]:
            yield e
        raise ConnectionResetError("stream cut")

    async def whole():
        for e in eps:
            yield e

    with pytest.raises(ConnectionResetError):
        await svc.Push(cut(), None)
    assert ledger.counts()["buffered"] == 3
    ack = await svc.Push(whole(), None)
    assert (ack.accepted, ack.duplicates, len(ack.acked_ids)) == (2, 3, 5)
    assert ledger.counts()["buffered"] == 5 and buf.buffered == 5
