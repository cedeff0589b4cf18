"""The learner's episode ledger: every episode that reached the learner, and what became of it, on disk.

    ledger = EpisodeLedger(Path(ckpt_dir) / "ledger.sqlite")
    ledger.accept(ep, raw)                       # False: already known (a resend) -> duplicate
    ledger.refuse(ep_id, actor_id, group_id, "stale")
    ledger.drop(["id1"], "incomplete_group")     # accepted earlier, never trained
    ledger.trained(ids, version)                 # the update that produced `version` used them
    pending = ledger.restore(checkpoint_version) # after a crash: what must go back into the buffer
    ledger.publishing(version)                   # lineage: the highest version ever published

Why it exists: the learner acknowledges an episode to the actor only once its row is committed here, and
the actor then forgets it. Without the ledger, a learner crash lost every episode acknowledged after its
last checkpoint, and re-trained the ones that the checkpoint still held as waiting but a later (lost)
update had already used. With it:

- accepted episodes keep their serialized bytes until a checkpoint covers the update that used them;
- ``restore(C)`` after a restart from the checkpoint of version C hands back every episode that is
  waiting, or that an update newer than C used (that update's weights are gone), and marks those train
  events rolled back: in the surviving lineage each episode is trained at most once;
- the highest version ever published survives, so a restarted learner never reuses a version number
  that actors may hold (see ``next_version``).

States: ``buffered`` (acknowledged, waiting), ``trained`` (``update_version`` = the version its update
produced), ``refused`` (``reason``: invalid, stale, unknown_version on arrival; dropped_stale or
incomplete_group when dropped from the buffer). ``train_events`` is append-only; a train event is
``rolled_back`` when its update was lost in a crash. SQLite in WAL mode with synchronous=NORMAL: a commit
survives a killed process (not a power cut), and costs tens of microseconds.

The connection is shared by the gRPC thread (arrivals) and the training thread (updates): one lock.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (
    episode_id TEXT PRIMARY KEY,
    actor_id TEXT NOT NULL DEFAULT '',
    group_id TEXT NOT NULL DEFAULT '',
    arrived REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('buffered', 'trained', 'refused')),
    reason TEXT NOT NULL DEFAULT '',
    update_version INTEGER,
    payload BLOB
);
CREATE INDEX IF NOT EXISTS episodes_state ON episodes(state);
CREATE TABLE IF NOT EXISTS train_events (
    episode_id TEXT NOT NULL,
    update_version INTEGER NOT NULL,
    rolled_back INTEGER NOT NULL DEFAULT 0,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS train_events_id ON train_events(episode_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

LEDGER_FILE = "ledger.sqlite"


class EpisodeLedger:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- arrivals (gRPC thread) -------------------------------------------------
    def known(self, episode_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM episodes WHERE episode_id=?", (episode_id,)).fetchone() is not None

    def accept(self, episode_id: str, actor_id: str, group_id: str, raw: bytes) -> bool:
        """Record an acknowledged episode with its bytes; False when the id is already known (nothing written)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO episodes(episode_id, actor_id, group_id, arrived, state, payload) "
                "VALUES (?,?,?,?, 'buffered', ?)", (episode_id, actor_id, group_id, time.time(), raw))
            return cur.rowcount == 1

    def refuse(self, episode_id: str, actor_id: str, group_id: str, reason: str) -> bool:
        """Record an episode refused on arrival; False when the id is already known."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO episodes(episode_id, actor_id, group_id, arrived, state, reason) "
                "VALUES (?,?,?,?, 'refused', ?)", (episode_id, actor_id, group_id, time.time(), reason))
            return cur.rowcount == 1

    # --- the buffer and the training loop ---------------------------------------
    def drop(self, episode_ids: list[str], reason: str) -> None:
        """Accepted episodes the buffer gave up on (too stale by the time they could train, incomplete group)."""
        if not episode_ids:
            return
        with self._lock:
            self._db.executemany("UPDATE episodes SET state='refused', reason=?, payload=NULL "
                                 "WHERE episode_id=? AND state='buffered'", [(reason, i) for i in episode_ids])

    def trained(self, episode_ids: list[str], version: int) -> None:
        """The update that produced ``version`` used these episodes (call before that version is checkpointed)."""
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany("UPDATE episodes SET state='trained', update_version=? WHERE episode_id=?",
                                 [(version, i) for i in episode_ids])
            self._db.executemany("INSERT INTO train_events(episode_id, update_version, time) VALUES (?,?,?)",
                                 [(i, version, now) for i in episode_ids])

    def checkpointed(self, version: int) -> None:
        """A checkpoint of ``version`` is complete: episodes its updates used need their bytes no more."""
        with self._lock:
            self._db.execute("UPDATE episodes SET payload=NULL WHERE state='trained' AND update_version<=? "
                             "AND payload IS NOT NULL", (version,))

    def restore(self, checkpoint_version: int) -> list[bytes]:
        """After a restart from the checkpoint of ``checkpoint_version`` (0: none): the episodes to buffer again.

        Updates newer than the checkpoint were lost with the process: the episodes they used are waiting
        again, and their train events are marked rolled back. Returned in arrival order.
        """
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute("UPDATE train_events SET rolled_back=1 WHERE update_version>? AND rolled_back=0",
                             (checkpoint_version,))
            self._db.execute("UPDATE episodes SET state='buffered', update_version=NULL "
                             "WHERE state='trained' AND update_version>?", (checkpoint_version,))
            rows = self._db.execute("SELECT payload FROM episodes WHERE state='buffered' ORDER BY arrived").fetchall()
        missing = sum(1 for (p,) in rows if p is None)
        if missing:  # only if bytes were dropped for a version the checkpoint does not cover: a bug
            raise RuntimeError(f"ledger {self.path}: {missing} waiting episodes have no stored bytes")
        return [bytes(p) for (p,) in rows]

    # --- lineage ------------------------------------------------------------------
    def publishing(self, version: int) -> None:
        """Record ``version`` as published (call before actors can see it)."""
        with self._lock:
            self._db.execute("INSERT INTO meta(key, value) VALUES ('published_version', ?) ON CONFLICT(key) "
                             "DO UPDATE SET value=MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                             (str(version),))

    def published_version(self) -> int:
        """Highest version ever published from this ledger's run; -1 if none."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key='published_version'").fetchone()
        return int(row[0]) if row else -1

    # --- accounting ---------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """{"buffered": n, "trained": n, "refused": n, "refused:<reason>": n, "train_events": n, "rolled_back": n}."""
        with self._lock:
            out = {"buffered": 0, "trained": 0, "refused": 0}
            for state, reason, n in self._db.execute("SELECT state, reason, COUNT(*) FROM episodes GROUP BY state, reason"):
                out[state] = out.get(state, 0) + n
                if state == "refused":
                    out[f"refused:{reason}"] = n
            out["train_events"], out["rolled_back"] = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(rolled_back), 0) FROM train_events").fetchone()
        return out


def next_version(checkpoint_version: int, published_version: int) -> int:
    """The version a restarted learner serves its restored weights under.

    Versions after the checkpoint named weights that died with the crash, and actors may hold them: the
    restored weights get a number above every published one, so actors take them as new and no number
    ever means two sets of weights. After a clean stop (the last checkpoint is the last version) it stays.
    """
    return checkpoint_version if published_version <= checkpoint_version else published_version + 1
