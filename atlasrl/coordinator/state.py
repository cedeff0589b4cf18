"""The coordinator's durable state: members, leases, counters, run state, history (embedded SQLite).

Knows nothing of gRPC. Every write commits before the call returns (WAL mode), so
a coordinator killed at any point and started again on the same file carries on:
member ids, cumulative counters, the policy version and the run state survive.

Counters are *cumulative per member*: a heartbeat carries the member's totals
since it registered and the store keeps the maximum seen, so a duplicated or
retried heartbeat never counts twice. Global counters (keyed ``role.name``) are sums
over every member of the role that ever registered, dead ones included, so a restarted role (a new member)
adds to the totals instead of replacing them.
"""
from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("envserver", "actor", "learner", "memory", "other", "critic")
RUN_STATES = ("running", "paused", "stopping")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    member_id TEXT PRIMARY KEY, role TEXT NOT NULL, name TEXT NOT NULL, address TEXT NOT NULL,
    metrics_address TEXT NOT NULL, capacity INTEGER NOT NULL, capabilities TEXT NOT NULL,
    registered_at REAL NOT NULL, last_heartbeat REAL NOT NULL, alive INTEGER NOT NULL,
    policy_version INTEGER NOT NULL DEFAULT -1, last_error TEXT NOT NULL DEFAULT '',
    error_count INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS counters (
    member_id TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (member_id, name));
CREATE TABLE IF NOT EXISTS gauges (
    member_id TEXT NOT NULL, name TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (member_id, name));
CREATE TABLE IF NOT EXISTS history (time REAL NOT NULL, counters TEXT NOT NULL, gauges TEXT NOT NULL);
"""


@dataclass
class Member:
    member_id: str
    role: str
    name: str
    address: str
    metrics_address: str
    capacity: int
    capabilities: list[str]
    registered_at: float
    last_heartbeat: float
    alive: bool
    policy_version: int = -1
    last_error: str = ""
    error_count: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)


class UnknownMember(KeyError):
    """No member with this id, or its lease already ran out."""


class StateStore:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.started_at = float(self._meta("started_at", time.time()))
        if self._meta("run_state", None) is None:
            self._set_meta(run_state="running", policy_version=-1, generation=0, assignment_fingerprint="")

    def close(self) -> None:
        self._db.close()

    # --- meta -----------------------------------------------------------------
    def _meta(self, key: str, default):
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        if row is None:
            if default is not None:
                self._set_meta(**{key: default})
            return default
        return row[0]

    def _set_meta(self, **values) -> None:
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", [(k, str(v)) for k, v in values.items()])

    @property
    def run_state(self) -> str:
        return self._meta("run_state", "running")

    def set_run_state(self, state: str) -> None:
        if state not in RUN_STATES:
            raise ValueError(f"run_state must be one of {RUN_STATES}, got {state!r}")
        self._set_meta(run_state=state)

    @property
    def policy_version(self) -> int:
        return int(self._meta("policy_version", -1))

    @property
    def generation(self) -> int:
        return int(self._meta("generation", 0))

    def update_assignment_fingerprint(self, fingerprint: str) -> bool:
        """Record the current assignment; bump the generation if it changed. Returns True on change."""
        if fingerprint == self._meta("assignment_fingerprint", ""):
            return False
        self._set_meta(assignment_fingerprint=fingerprint, generation=self.generation + 1)
        return True

    # --- membership -------------------------------------------------------------
    def register(self, *, role: str, name: str, address: str, metrics_address: str, capacity: int,
                 capabilities: list[str], now: float) -> Member:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        member_id = f"{role}-{uuid.uuid4().hex[:12]}"
        name = name or member_id
        with self._db:
            self._db.execute(
                "INSERT INTO members(member_id, role, name, address, metrics_address, capacity, capabilities,"
                " registered_at, last_heartbeat, alive) VALUES (?,?,?,?,?,?,?,?,?,1)",
                (member_id, role, name, address, metrics_address, capacity, json.dumps(sorted(capabilities)), now, now))
        return self.member(member_id)

    def heartbeat(self, member_id: str, *, now: float, policy_version: int, counters: dict[str, int],
                  gauges: dict[str, float], last_error: str, error_count: int) -> Member:
        m = self.member(member_id)
        if not m.alive:
            raise UnknownMember(f"member {member_id} is no longer alive (lease expired or deregistered); register again")
        with self._db:
            self._db.execute(
                "UPDATE members SET last_heartbeat=?, policy_version=?, last_error=?, error_count=MAX(error_count, ?)"
                " WHERE member_id=?", (now, policy_version, last_error, error_count, member_id))
            self._db.executemany(
                "INSERT INTO counters(member_id, name, value) VALUES (?,?,?) ON CONFLICT(member_id, name)"
                " DO UPDATE SET value=MAX(value, excluded.value)", [(member_id, k, int(v)) for k, v in counters.items()])
            self._db.executemany(
                "INSERT OR REPLACE INTO gauges(member_id, name, value) VALUES (?,?,?)",
                [(member_id, k, float(v)) for k, v in gauges.items()])
            if m.role == "learner" and policy_version >= 0:
                self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('policy_version', ?)", (str(policy_version),))
        return self.member(member_id)

    def deregister(self, member_id: str) -> Member:
        m = self.member(member_id)
        with self._db:
            self._db.execute("UPDATE members SET alive=0 WHERE member_id=?", (member_id,))
        m.alive = False
        return m

    def expire(self, now: float, ttl_s: float) -> list[Member]:
        """Mark members whose lease ran out as dead; returns them."""
        rows = self._db.execute("SELECT member_id FROM members WHERE alive=1 AND last_heartbeat < ?", (now - ttl_s,)).fetchall()
        expired = [self.deregister(r[0]) for r in rows]
        return expired

    def extend_all_leases(self, now: float) -> None:
        """After a coordinator restart: give every live member a fresh lease to find us again."""
        with self._db:
            self._db.execute("UPDATE members SET last_heartbeat=MAX(last_heartbeat, ?) WHERE alive=1", (now,))

    def member(self, member_id: str) -> Member:
        row = self._db.execute("SELECT * FROM members WHERE member_id=?", (member_id,)).fetchone()
        if row is None:
            raise UnknownMember(f"unknown member_id {member_id!r}; register first")
        return self._to_member(row)

    def members(self, *, role: str | None = None, alive_only: bool = True) -> list[Member]:
        sql, args = "SELECT * FROM members WHERE 1=1", []
        if role is not None:
            sql, args = sql + " AND role=?", [role]
        if alive_only:
            sql += " AND alive=1"
        return [self._to_member(r) for r in self._db.execute(sql + " ORDER BY registered_at, member_id", args)]

    def _to_member(self, row) -> Member:
        (member_id, role, name, address, metrics_address, capacity, caps, registered_at, last_hb, alive,
         version, last_error, error_count) = row
        counters = dict(self._db.execute("SELECT name, value FROM counters WHERE member_id=?", (member_id,)).fetchall())
        gauges = dict(self._db.execute("SELECT name, value FROM gauges WHERE member_id=?", (member_id,)).fetchall())
        return Member(member_id, role, name, address, metrics_address, capacity, json.loads(caps), registered_at,
                      last_hb, bool(alive), version, last_error, error_count, counters, gauges)

    # --- aggregates -------------------------------------------------------------
    def global_counters(self) -> dict[str, int]:
        """``role.name`` -> sum over every member of that role ever registered (env servers and actors
        both count env steps; keeping roles apart means nothing is counted twice)."""
        return dict(self._db.execute(
            "SELECT m.role || '.' || c.name, SUM(c.value) FROM counters c JOIN members m USING(member_id)"
            " GROUP BY m.role, c.name ORDER BY 1").fetchall())

    def global_gauges(self) -> dict[str, float]:
        """``role.name`` -> mean over alive members of that role reporting it."""
        return dict(self._db.execute(
            "SELECT m.role || '.' || g.name, AVG(g.value) FROM gauges g JOIN members m USING(member_id)"
            " WHERE m.alive=1 GROUP BY m.role, g.name ORDER BY 1").fetchall())

    def append_history(self, now: float) -> None:
        with self._db:
            self._db.execute("INSERT INTO history(time, counters, gauges) VALUES (?,?,?)",
                             (now, json.dumps(self.global_counters()), json.dumps(self.global_gauges())))

    def history(self, limit: int) -> list[tuple[float, dict[str, int], dict[str, float]]]:
        if limit <= 0:
            return []
        rows = self._db.execute("SELECT time, counters, gauges FROM history ORDER BY rowid DESC LIMIT ?", (limit,)).fetchall()
        return [(t, json.loads(c), json.loads(g)) for t, c, g in reversed(rows)]
