"""EpisodeSpool: the actor's per-episode SQLite ledger (schema, incarnations, transitions, restarts)."""
from __future__ import annotations

import sqlite3
import uuid

import pytest

from atlasrl.clients.spool import EpisodeLedger, EpisodeSpool, open_ledger
from atlasrl.v1 import trajectory_pb2


def episode(i: int) -> trajectory_pb2.Episode:
    ep = trajectory_pb2.Episode(episode_id=str(uuid.uuid4()), actor_id="actor-0", group_id=f"g{i // 2}", seed=i)
    ep.turns.add(prompt_ids=[1, 2, i], response_ids=[4], logprobs=[-0.5], loss_mask=[1])
    return ep


def rows(path) -> dict[str, tuple]:
    """episode_id -> (state, reason, incarnation, payload is not None), read as the reconciliation tool would."""
    with sqlite3.connect(path) as db:
        return {r[0]: r[1:] for r in db.execute(
            "SELECT episode_id, state, reason, incarnation, payload IS NOT NULL FROM episodes")}


def kill(spool: EpisodeSpool) -> None:
    """What a SIGKILL leaves: the connection gone, close() never called."""
    spool._db.close()


def test_schema_file_and_incarnations(tmp_path):
    s = EpisodeSpool(tmp_path / "spool", "actor-3")
    assert s.path == tmp_path / "spool" / "actor-3.sqlite" and s.incarnation == 1
    s.close()
    with sqlite3.connect(s.path) as db:
        cols = [(c[1], c[2], c[3], c[4], c[5]) for c in db.execute("PRAGMA table_info(episodes)")]
        assert cols == [("episode_id", "TEXT", 0, None, 1), ("actor_id", "TEXT", 1, None, 0),
                        ("incarnation", "INTEGER", 1, None, 0), ("created", "REAL", 1, None, 0),
                        ("state", "TEXT", 1, None, 0), ("reason", "TEXT", 1, "''", 0), ("updated", "REAL", 1, None, 0),
                        ("payload", "BLOB", 0, None, 0)]
        assert [(c[1], c[2]) for c in db.execute("PRAGMA table_info(meta)")] == [("key", "TEXT"), ("value", "TEXT")]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(sqlite3.IntegrityError):  # the CHECK on state
            db.execute("INSERT INTO episodes VALUES ('x', 'a', 1, 0, 'trained', '', 0, NULL)")
    for expected in (2, 3):
        s = EpisodeSpool(tmp_path / "spool", "actor-3")
        assert s.incarnation == expected
        kill(s) if expected == 2 else s.close()   # a kill increments it just the same
    with sqlite3.connect(s.path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'incarnation'").fetchone() == ("3",)


def test_transitions_and_counts(tmp_path):
    seen = []
    s = EpisodeSpool(tmp_path, "a", observer=lambda o, r, n: seen.append((o, r, n)))
    eps = [episode(i) for i in range(5)]
    assert all(s.generated(ep) for ep in eps)
    assert not s.generated(eps[0]), "an id recorded twice"
    r = rows(s.path)
    assert all(v == ("pending", "", 1, 1) for v in r.values()) and len(r) == 5
    s.acked([eps[0].episode_id, eps[1].episode_id, "never-generated"])
    s.acked([eps[0].episode_id])                       # a duplicate ack settles nothing twice
    s.refused(eps[2].episode_id, "stale")
    s.refused(eps[2].episode_id, "invalid")            # already settled: unchanged
    s.refused(eps[3].episode_id, "invalid")
    r = rows(s.path)
    assert r[eps[0].episode_id] == ("acked", "", 1, 0) and r[eps[2].episode_id] == ("refused", "stale", 1, 0)
    assert r[eps[3].episode_id] == ("refused", "invalid", 1, 0) and r[eps[4].episode_id] == ("pending", "", 1, 1)
    assert s.counts() == {"states": {"pending": 1, "acked": 2, "refused": 2, "lost": 0},
                          "reasons": {"refused": {"stale": 1, "invalid": 1}}}
    assert s.total("generated") == 5 and s.total("acked") == 2 and s.by_reason("refused") == {"stale": 1, "invalid": 1}
    assert sum(n for o, _, n in seen if o == "generated") == 5 and ("refused", "stale", 1) in seen
    s.close()


def test_pending_rows_are_resent_after_a_kill_with_payloads(tmp_path):
    s = EpisodeSpool(tmp_path, "actor-0")
    eps = [episode(i) for i in range(4)]
    for ep in eps:
        s.generated(ep)
    s.acked([eps[0].episode_id])
    kill(s)
    s2 = EpisodeSpool(tmp_path, "actor-0")
    assert s2.incarnation == 2
    assert [e.episode_id for e in s2.recovered] == [e.episode_id for e in eps[1:]]   # oldest first
    assert s2.recovered[1] == eps[2], "the payload did not round-trip"
    assert s2.session == {("resent", ""): 3} and s2.total("lost") == 0
    assert s2.counts()["states"] == {"pending": 3, "acked": 1, "refused": 0, "lost": 0}
    s2.acked([e.episode_id for e in s2.recovered])
    new = episode(9)
    s2.generated(new)
    s2.close()                                         # a clean stop keeps the pending payload for the next start
    assert rows(s2.path)[new.episode_id] == ("pending", "", 2, 1)
    s3 = EpisodeSpool(tmp_path, "actor-0")
    assert [e.episode_id for e in s3.recovered] == [new.episode_id]
    assert s3.counts()["states"] == {"pending": 1, "acked": 4, "refused": 0, "lost": 0}
    s3.close()


def test_pending_rows_are_lost_after_a_kill_without_payloads(tmp_path):
    s = EpisodeSpool(tmp_path, "actor-0", keep_payloads=False)
    eps = [episode(i) for i in range(3)]
    for ep in eps:
        s.generated(ep)
    assert all(v[3] == 0 for v in rows(s.path).values()), "payloads stored with keep_payloads=False"
    s.acked([eps[0].episode_id])
    kill(s)
    s2 = EpisodeSpool(tmp_path, "actor-0", keep_payloads=False)
    assert s2.recovered == [] and s2.session == {("lost", "actor_restarted"): 2}
    r = rows(s2.path)
    assert r[eps[1].episode_id] == ("lost", "actor_restarted", 1, 0) and r[eps[0].episode_id][0] == "acked"
    late = episode(7)
    s2.generated(late)
    s2.close()                                         # ids only: still pending at a clean stop = lost
    assert rows(s2.path)[late.episode_id] == ("lost", "actor_stopped", 2, 0)
    assert s2.by_reason("lost") == {"actor_restarted": 2, "actor_stopped": 1}
    s3 = EpisodeSpool(tmp_path, "actor-0")             # payloads on now: nothing left to re-send
    assert s3.recovered == [] and s3.counts() == {"states": {"pending": 0, "acked": 1, "refused": 0, "lost": 3},
                                                  "reasons": {"lost": {"actor_restarted": 2, "actor_stopped": 1}}}
    s3.close()


def test_payloads_kept_but_spool_now_off_counts_them_lost(tmp_path):
    s = EpisodeSpool(tmp_path, "actor-0")
    s.generated(episode(0))
    kill(s)
    s2 = EpisodeSpool(tmp_path, "actor-0", keep_payloads=False)
    assert s2.recovered == [] and s2.by_reason("lost") == {"actor_restarted": 1}
    s2.close()


def test_in_memory_ledger_counts_only(tmp_path):
    led = open_ledger(None, "actor-0")
    assert type(led) is EpisodeLedger and not led.durable and led.path is None
    eps = [episode(i) for i in range(4)]
    for ep in eps:
        assert led.generated(ep)
    led.acked([eps[0].episode_id])
    led.refused(eps[1].episode_id, "stale")
    assert led.counts() == {"states": {"pending": 2, "acked": 1, "refused": 1, "lost": 0},
                            "reasons": {"refused": {"stale": 1}, "lost": {}}}
    led.close([eps[2].episode_id, eps[3].episode_id])
    assert led.by_reason("lost") == {"actor_stopped": 2} and led.counts()["states"]["pending"] == 0
    assert list(tmp_path.iterdir()) == []
    spool = open_ledger(tmp_path, "actor-0")
    assert isinstance(spool, EpisodeSpool) and spool.path.exists()
    spool.close()
