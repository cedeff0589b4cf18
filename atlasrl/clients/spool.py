"""Episode accounting on the actor: every episode it generates ends acked, refused or lost, each counted.

    ledger = open_ledger(spool_dir, "actor-0", keep_payloads=True)   # EpisodeSpool, or EpisodeLedger if no dir
    sender = TrajectorySender(learner, spool=ledger)                   # re-sends ledger.recovered first

Outcomes (``OUTCOMES``): ``generated`` when the actor hands an episode to the sender, then exactly one of
``acked`` (a PushAck listed it: the learner holds it, as new or as a duplicate), ``refused`` (the learner
rejected it for good; the reason is RejectedEpisode.reason: invalid, stale, unknown_version, unparseable) or
``lost`` (the actor stopped before an ack: reason ``actor_stopped`` at a clean exit, ``actor_restarted``
when a restarted actor finds episodes a killed one left unacknowledged). ``resent`` counts episodes a
restarted actor took back from its spool to send again; they end acked or refused like the others.

``EpisodeLedger`` keeps those counts in memory only: without a spool directory there is no file and no
durability, so the unacked episodes of an actor that is killed (SIGKILL, OOM, power) are accounted nowhere;
the learner's ledger alone knows which of them arrived. ``EpisodeSpool`` adds a per-actor SQLite file,
``<spool_dir>/<actor_id>.sqlite`` (WAL, synchronous=NORMAL: a commit survives a killed process, not a
power cut), one row per episode (schema in ``SCHEMA``; the reconciliation tool reads it directly):

* each open increments ``meta.incarnation``;
* ``generated`` inserts a ``pending`` row, with the serialized Episode as ``payload`` when payloads are
  kept (``keep_payloads``, the actor's ``--spool``), NULL otherwise (``--no-spool``: ids only);
* an ack, refusal or loss sets ``state``/``reason``/``updated`` and drops the payload;
* rows an earlier incarnation left ``pending`` are, at open, taken back for re-sending when they have a
  payload and payloads are kept (``recovered``, counted ``resent``; the learner deduplicates on the id),
  else marked ``lost``/``actor_restarted``;
* at a clean close, pending rows keep their payloads (re-sent at the next start) or, without payloads,
  become ``lost``/``actor_stopped``.

The file needs a stable actor id across restarts (``atlasrl up`` passes actor-0, actor-1, ...). Acked rows
are kept (about 100 bytes each, without payload) so that the file accounts for the whole run.
"""
from __future__ import annotations

import collections
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from atlasrl.v1 import trajectory_pb2

log = logging.getLogger("atlasrl.clients.spool")

OUTCOMES = ("generated", "acked", "refused", "lost", "resent")
STATES = ("pending", "acked", "refused", "lost")
REFUSAL_REASONS = ("invalid", "stale", "unknown_version", "unparseable")
LOSS_REASONS = ("actor_restarted", "actor_stopped", "unreadable")  # unreadable: a spooled payload did not parse

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS episodes(episode_id TEXT PRIMARY KEY, actor_id TEXT NOT NULL, "
    "incarnation INTEGER NOT NULL, created REAL NOT NULL, "
    "state TEXT NOT NULL CHECK(state IN ('pending','acked','refused','lost')), "
    "reason TEXT NOT NULL DEFAULT '', updated REAL NOT NULL, payload BLOB)",
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # Only the (few) pending rows: what an open scans, cheap to maintain.
    "CREATE INDEX IF NOT EXISTS episodes_pending ON episodes(state) WHERE state = 'pending'",
)

Observer = Callable[[str, str, int], None]
"""Called as observer(outcome, reason, n) for every count (the actor's Prometheus counter)."""


class EpisodeLedger:
    """This process's episode outcome counts, in memory (no file, no durability; see the module doc)."""

    durable = False
    path: Path | None = None
    incarnation = 0
    keep_payloads = False

    def __init__(self, observer: Observer | None = None):
        self.session: collections.Counter[tuple[str, str]] = collections.Counter()
        """(outcome, reason) -> episodes, since this process opened the ledger (reason '' for generated/acked/resent)."""
        self.recovered: list[trajectory_pb2.Episode] = []
        """Episodes taken back from an earlier incarnation, to be sent first (the spool only)."""
        self._observer = observer
        self._closed = False

    # -- counts ------------------------------------------------------------
    def _count(self, outcome: str, reason: str = "", n: int = 1) -> None:
        if n <= 0:
            return
        self.session[(outcome, reason)] += n
        if self._observer is not None:
            self._observer(outcome, reason, n)

    def total(self, outcome: str) -> int:
        """Episodes of one outcome since this process opened the ledger, all reasons together."""
        return sum(n for (o, _), n in self.session.items() if o == outcome)

    def by_reason(self, outcome: str) -> dict[str, int]:
        return {r: n for (o, r), n in self.session.items() if o == outcome and n}

    def counts(self) -> dict:
        """{'states': {state: n}, 'reasons': {state: {reason: n}}} of this process's episodes (pending = not yet settled)."""
        settled = self.total("acked") + self.total("refused") + self.total("lost")
        states = {"pending": self.total("generated") + self.total("resent") - settled, "acked": self.total("acked"),
                  "refused": self.total("refused"), "lost": self.total("lost")}
        return {"states": states, "reasons": {s: self.by_reason(s) for s in ("refused", "lost")}}

    # -- transitions -------------------------------------------------------
    def generated(self, episode: trajectory_pb2.Episode) -> bool:
        """Record a new episode (pending); False when its id was recorded before (it must not be sent again)."""
        self._count("generated")
        return True

    def acked(self, episode_ids: Iterable[str]) -> None:
        """Settle pending episodes the learner acknowledged (callers pass only ids they hold pending)."""
        self._count("acked", "", len(list(episode_ids)))

    def refused(self, episode_id: str, reason: str) -> None:
        self._count("refused", reason)

    def close(self, pending_ids: Iterable[str] = ()) -> None:
        """Clean stop: episodes still pending are lost (actor_stopped); without a spool nothing survives."""
        if self._closed:
            return
        self._closed = True
        self._count("lost", "actor_stopped", len(list(pending_ids)))


class EpisodeSpool(EpisodeLedger):
    """EpisodeLedger backed by ``<spool_dir>/<actor_id>.sqlite``; survives a killed process (module doc)."""

    durable = True

    def __init__(self, spool_dir: str | Path, actor_id: str, *, keep_payloads: bool = True,
                 observer: Observer | None = None):
        super().__init__(observer)
        if not actor_id:
            raise ValueError("the spool needs an actor id (its file name)")
        self.actor_id = actor_id
        self.keep_payloads = keep_payloads
        d = Path(spool_dir)
        d.mkdir(parents=True, exist_ok=True)
        self.path = d / f"{actor_id}.sqlite"
        # One connection, used from the actor's event loop; isolation_level=None: explicit transactions.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._tx():
            for stmt in SCHEMA:
                self._db.execute(stmt)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'incarnation'").fetchone()
            self.incarnation = (int(row[0]) if row else 0) + 1
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('incarnation', ?)", (str(self.incarnation),))
            self._recover()
        if self.recovered or self.session:
            log.info("spool %s (incarnation %d): %d unacked episodes of earlier runs to re-send, %d lost",
                     self.path, self.incarnation, len(self.recovered), self.total("lost"))

    def _tx(self):
        return _Transaction(self._db)

    def _recover(self) -> None:
        now = time.time()
        rows = self._db.execute("SELECT episode_id, payload FROM episodes WHERE state = 'pending' AND incarnation < ? "
                                "ORDER BY created", (self.incarnation,)).fetchall()
        lost: list[tuple[str, str]] = []
        for eid, payload in rows:
            if payload is not None and self.keep_payloads:
                ep = trajectory_pb2.Episode()
                try:
                    ep.ParseFromString(payload)
                except Exception:  # noqa: BLE001 - a torn or foreign payload: account for it rather than crash the actor
                    lost.append((eid, "unreadable"))
                    continue
                if ep.episode_id == eid:
                    self.recovered.append(ep)
                    continue
                lost.append((eid, "unreadable"))
            else:
                lost.append((eid, "actor_restarted"))
        self._db.executemany("UPDATE episodes SET state = 'lost', reason = ?, updated = ?, payload = NULL "
                             "WHERE episode_id = ?", [(r, now, eid) for eid, r in lost])
        for _, reason in lost:
            self._count("lost", reason)
        self._count("resent", "", len(self.recovered))

    # -- counts ------------------------------------------------------------
    def counts(self) -> dict:
        """{'states': {state: n}, 'reasons': {state: {reason: n}}} of the whole file (every incarnation)."""
        states = dict.fromkeys(STATES, 0)
        reasons: dict[str, dict[str, int]] = {}
        for state, reason, n in self._db.execute("SELECT state, reason, COUNT(*) FROM episodes GROUP BY state, reason"):
            states[state] += n
            if reason:
                reasons.setdefault(state, {})[reason] = n
        return {"states": states, "reasons": reasons}

    # -- transitions -------------------------------------------------------
    def generated(self, episode: trajectory_pb2.Episode) -> bool:
        now = time.time()
        payload = episode.SerializeToString() if self.keep_payloads else None
        with self._tx():
            cur = self._db.execute(
                "INSERT OR IGNORE INTO episodes(episode_id, actor_id, incarnation, created, state, reason, updated, payload) "
                "VALUES (?, ?, ?, ?, 'pending', '', ?, ?)",
                (episode.episode_id, self.actor_id, self.incarnation, now, now, payload))
        if cur.rowcount != 1:
            log.warning("episode %s is already in the spool: not sent again", episode.episode_id)
            return False
        self._count("generated")
        return True

    def _settle(self, rows: list[tuple[str, str]], state: str) -> int:
        """rows: (episode_id, reason); only pending rows change. Returns how many did."""
        now = time.time()
        with self._tx():
            before = self._db.total_changes
            self._db.executemany(f"UPDATE episodes SET state = '{state}', reason = ?, updated = ?, payload = NULL "
                                 "WHERE episode_id = ? AND state = 'pending'", [(r, now, eid) for eid, r in rows])
            return self._db.total_changes - before

    def acked(self, episode_ids: Iterable[str]) -> None:
        ids = list(episode_ids)
        if ids:
            self._count("acked", "", self._settle([(eid, "") for eid in ids], "acked"))

    def refused(self, episode_id: str, reason: str) -> None:
        self._count("refused", reason, self._settle([(episode_id, reason)], "refused"))

    def close(self, pending_ids: Iterable[str] = ()) -> None:
        """Clean stop: pending rows keep their payloads for the next start, or (ids only) become lost/actor_stopped."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self.keep_payloads:
                now = time.time()
                with self._tx():
                    n = self._db.execute("UPDATE episodes SET state = 'lost', reason = 'actor_stopped', updated = ?, "
                                         "payload = NULL WHERE state = 'pending'", (now,)).rowcount
                self._count("lost", "actor_stopped", n)
            else:
                n = self._db.execute("SELECT COUNT(*) FROM episodes WHERE state = 'pending'").fetchone()[0]
                if n:
                    log.info("spool %s: %d unacked episodes kept for the next start", self.path, n)
        finally:
            self._db.close()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) on an isolation_level=None connection."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def open_ledger(spool_dir: str | Path | None, actor_id: str, *, keep_payloads: bool = True,
                observer: Observer | None = None) -> EpisodeLedger:
    """An EpisodeSpool in spool_dir, or the in-memory EpisodeLedger when spool_dir is None/empty."""
    if spool_dir:
        return EpisodeSpool(spool_dir, actor_id, keep_payloads=keep_payloads, observer=observer)
    return EpisodeLedger(observer)
