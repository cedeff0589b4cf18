"""Reconciling the actors' spools with the learner's ledger: every generated episode gets one outcome."""
import subprocess
import sys

from atlasrl.clients.spool import EpisodeSpool
from atlasrl.learner.ledger import EpisodeLedger
from atlasrl.up.accounting import reconcile
from atlasrl.v1 import trajectory_pb2


def ep(i: int) -> trajectory_pb2.Episode:
    return trajectory_pb2.Episode(episode_id=f"e{i}", actor_id="actor-0", group_id=f"g{i // 2}")


def build(tmp_path):
    """Ten episodes of actor-0 through every outcome; the learner's side written as the learner writes it."""
    spool_dir, ledger = tmp_path / "spool", EpisodeLedger(tmp_path / "ledger.sqlite")
    s = EpisodeSpool(spool_dir, "actor-0", keep_payloads=True)
    eps = [ep(i) for i in range(10)]
    for e in eps:
        s.generated(e)
    for e in eps[:6]:                                     # 0-5 reached the learner and were acknowledged
        ledger.accept(e.episode_id, "actor-0", e.group_id, e.SerializeToString())
    s.acked([e.episode_id for e in eps[:6]])
    ledger.trained(["e0", "e1", "e2"], 1)
    ledger.trained(["e3"], 2)
    ledger.restore(1)                                    # the learner crashed before checkpointing 2: e3 waits again
    ledger.trained(["e3"], 3)
    ledger.drop(["e4"], "incomplete_group")              # e5 still waiting when the run stopped
    ledger.refuse("e6", "actor-0", "g3", "stale")
    s.refused("e6", "stale")
    s.refused("e7", "unparseable")                       # the learner could not even read it: no row there
    s._db.close()                                        # SIGKILL with e8, e9 unacknowledged
    return spool_dir, ledger


def test_every_outcome_and_the_balance(tmp_path):
    spool_dir, ledger = build(tmp_path)
    acc = reconcile([spool_dir / "actor-0.sqlite"], ledger.path)
    assert acc.generated == 10
    assert dict(acc.outcomes) == {"trained": 4, "refused:incomplete_group": 1, "waiting": 1, "refused:stale": 1,
                                  "refused:unparseable": 1, "unsent": 2}
    assert acc.balanced and acc.rolled_back == 1 and acc.violations["trained_twice"] == 0
    # restarted without payloads kept: the two unsent ones are lost, with the reason
    EpisodeSpool(spool_dir, "actor-0", keep_payloads=False).close()
    acc = reconcile([spool_dir / "actor-0.sqlite"], ledger.path)
    assert acc.outcomes["lost:actor_restarted"] == 2 and acc.balanced and acc.incarnations == {"actor-0": 2}


def test_violations_are_found(tmp_path):
    spool_dir, ledger = build(tmp_path)
    ledger.trained(["e0"], 4)                            # trained a second time in the same lineage
    ledger.accept("stranger", "actor-9", "g", b"x")      # from an actor whose spool we do not have
    db = ledger._db
    db.execute("DELETE FROM episodes WHERE episode_id='e5'")   # acknowledged, then gone from the learner
    acc = reconcile([spool_dir / "actor-0.sqlite"], ledger.path)
    assert not acc.balanced
    assert acc.violations["trained_twice"] == 1 and acc.violations["unknown_origin"] == 1
    assert acc.violations["acked_missing"] == 1
    r = subprocess.run([sys.executable, "-m", "atlasrl.cli.main", "accounting", "--spool",
                        str(spool_dir / "actor-0.sqlite"), "--ledger", str(ledger.path)], capture_output=True, text=True)
    assert r.returncode == 1 and "NOT balanced" in r.stdout, r.stdout + r.stderr


def test_cli_on_a_run_directory(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    spool_dir, ledger = build(run / "x")
    (run / "spool").mkdir()
    (spool_dir / "actor-0.sqlite").rename(run / "spool" / "actor-0.sqlite")
    ledger.close()
    ledger.path.rename(run / "checkpoints" / "ledger.sqlite")
    r = subprocess.run([sys.executable, "-m", "atlasrl.cli.main", "accounting", str(run)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "generated        10" in r.stdout and "balanced" in r.stdout
