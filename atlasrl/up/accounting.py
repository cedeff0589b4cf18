"""Episode accounting for a run: what became of every episode the actors generated, from the two ledgers.

    acc = reconcile(sorted(Path(run_dir, "spool").glob("*.sqlite")), Path(run_dir, "checkpoints", "ledger.sqlite"))
    print(acc.table())          # generated = trained + refused + lost + waiting + unsent, and any violation
    acc.balanced, acc.violations

The actors' spools (``clients/spool.py``, one SQLite file per actor) know what was generated and what an actor
lost; the learner's ledger (``learner/ledger.py``) knows what arrived and what it trained or refused. Both are
read here as plain SQLite files (a run's ops tool, like `atlasrl status`: no role imports the other's code),
so on several hosts copy the files next to each other and run ``atlasrl accounting`` on them.

Outcome of each generated episode, the learner's word first (it holds the episode):
- ``trained``: an update used it, in the surviving lineage (train events of updates lost in a learner crash
  are rolled back and do not count);
- ``refused:<reason>``: the learner refused it on arrival (invalid, stale, unknown_version) or gave up on it
  in its buffer (dropped_stale, incomplete_group); or the actor counted a refusal the learner has no row
  for (unparseable, or a learner without a ledger);
- ``waiting``: acknowledged, in the learner's buffer when the run stopped (its checkpoint and ledger keep it);
- ``lost:<reason>``: the actor stopped before an acknowledgement and kept no copy (actor_restarted,
  actor_stopped);
- ``unsent``: still in an actor's spool with its bytes: the next start of that actor sends it.

Violations (each should be 0): ``trained_twice`` (an id with two live train events), ``acked_missing``
(acknowledged to an actor but absent from the learner's ledger), ``unknown_origin`` (at the learner, in no
actor's spool: an actor without ``--spool-dir``, or the spools given are not all of the run's).
"""
from __future__ import annotations

import collections
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Accounting:
    generated: int = 0
    outcomes: collections.Counter = field(default_factory=collections.Counter)   # "trained", "refused:stale", ...
    violations: collections.Counter = field(default_factory=collections.Counter)
    per_actor: dict[str, collections.Counter] = field(default_factory=dict)
    rolled_back: int = 0          # train events of updates lost in learner crashes (re-trained since, or waiting)
    incarnations: dict[str, int] = field(default_factory=dict)   # actor -> times its process started

    def total(self, kind: str) -> int:
        """Sum of the outcomes of one kind ("trained", "refused", "lost", "waiting", "unsent")."""
        return sum(n for k, n in self.outcomes.items() if k.split(":")[0] == kind)

    @property
    def balanced(self) -> bool:
        """generated = trained + refused + lost + waiting + unsent, and no violation."""
        return self.generated == sum(self.outcomes.values()) and not any(self.violations.values())

    def as_dict(self) -> dict:
        return {"generated": self.generated, **{k: self.total(k) for k in ("trained", "refused", "lost", "waiting", "unsent")},
                "outcomes": dict(sorted(self.outcomes.items())), "violations": dict(self.violations),
                "rolled_back": self.rolled_back, "incarnations": self.incarnations, "balanced": self.balanced}

    def table(self) -> str:
        d = self.as_dict()
        rows = [("generated", d["generated"])] + [(k, d[k]) for k in ("trained", "refused", "lost", "waiting", "unsent")]
        detail = {k: n for k, n in sorted(self.outcomes.items()) if ":" in k}
        lines = [f"{k:>10} {v:>9,}" for k, v in rows]
        if detail:
            lines.append("   by reason: " + ", ".join(f"{k} {v:,}" for k, v in detail.items()))
        if self.rolled_back:
            lines.append(f"   train events rolled back by learner restarts: {self.rolled_back:,} (those episodes trained again)")
        lines.append("balanced: generated = trained + refused + lost + waiting + unsent" if self.balanced else
                     f"NOT balanced: outcomes sum to {sum(self.outcomes.values()):,}; violations {dict(self.violations)}")
        return "\n".join(lines)


def _rows(path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)   # read-only: the run may still be writing
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def reconcile(spools: list[Path], ledger: Path | None) -> Accounting:
    acc = Accounting()
    learner: dict[str, tuple[str, str]] = {}
    live_trains: collections.Counter = collections.Counter()
    if ledger is not None and Path(ledger).exists():
        learner = {i: (s, r) for i, s, r in _rows(ledger, "SELECT episode_id, state, reason FROM episodes")}
        for i, n in _rows(ledger, "SELECT episode_id, COUNT(*) FROM train_events WHERE rolled_back=0 GROUP BY episode_id"):
            live_trains[i] = n
        acc.rolled_back = _rows(ledger, "SELECT COUNT(*) FROM train_events WHERE rolled_back=1")[0][0]
    seen: set[str] = set()
    for spool in spools:
        for (inc,) in _rows(spool, "SELECT value FROM meta WHERE key='incarnation'"):
            acc.incarnations[Path(spool).stem] = int(inc)
        for episode_id, actor_id, state, reason, has_payload in _rows(
                spool, "SELECT episode_id, actor_id, state, reason, payload IS NOT NULL FROM episodes"):
            if episode_id in seen:          # two spools with one id: a copied file
                acc.violations["generated_twice"] += 1
                continue
            seen.add(episode_id)
            acc.generated += 1
            outcome = _outcome(episode_id, state, reason, bool(has_payload), learner, acc)
            acc.outcomes[outcome] += 1
            acc.per_actor.setdefault(actor_id, collections.Counter())[outcome] += 1
    acc.violations["trained_twice"] = sum(1 for n in live_trains.values() if n > 1)
    acc.violations["unknown_origin"] = sum(1 for i in learner if i not in seen) if spools else 0
    acc.violations.setdefault("acked_missing", 0)
    return acc


def _outcome(episode_id: str, state: str, reason: str, has_payload: bool, learner: dict, acc: Accounting) -> str:
    at_learner = learner.get(episode_id)
    if at_learner is not None:
        lstate, lreason = at_learner
        return {"buffered": "waiting", "trained": "trained"}.get(lstate, f"refused:{lreason}")
    if state == "lost":
        return f"lost:{reason}"
    if state == "refused":
        return f"refused:{reason}"
    if state == "pending":
        return "unsent" if has_payload else "lost:actor_stopped"
    if learner:   # acked, yet the learner's ledger has no row: the promise was broken
        acc.violations["acked_missing"] += 1
        return "lost:acked_missing"
    return "acked_unverified"   # no learner ledger to check against (learner without ckpt_dir)


def run_files(run_dir: Path) -> tuple[list[Path], Path]:
    """The spools and the ledger of an `atlasrl up` run directory."""
    run_dir = Path(run_dir)
    return sorted((run_dir / "spool").glob("*.sqlite")), run_dir / "checkpoints" / "ledger.sqlite"
