"""What the episode accounting costs per episode: the learner's ledger and the actor's spool, against none.

    .venv/bin/python bench/episode_ledger.py [--episodes 2000] [--turns 10] [--tokens 300] [--rounds 3]

Learner side: ``EpisodeBuffer.add`` with and without a ledger (the ledger commits each episode, bytes
included, before the add returns), then ``ledger.trained`` per batch of 16. Actor side: the sender's
ledger calls per episode, ``generated`` + ``acked``, for the SQLite spool with payloads (the default),
ids only, and the in-memory ledger. Episodes are built like FrozenLake's: ``--turns`` turns of ``--tokens``
prompt tokens. Medians of alternating rounds; the last line is JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from atlasrl.clients.spool import EpisodeLedger as ActorLedger
from atlasrl.clients.spool import EpisodeSpool
from atlasrl.learner.buffer import EpisodeBuffer
from atlasrl.learner.config import LearnerConfig
from atlasrl.learner.ledger import EpisodeLedger
from atlasrl.v1 import trajectory_pb2


def episodes(n: int, turns: int, tokens: int) -> list[trajectory_pb2.Episode]:
    out = []
    for i in range(n):
        ep = trajectory_pb2.Episode(episode_id=str(uuid.uuid4()), actor_id="bench", group_id=f"g{i // 4}", group_size=4)
        for _ in range(turns):
            ep.turns.add(prompt_ids=list(range(1, tokens + 1)), response_ids=[5], logprobs=[-0.5], loss_mask=[1],
                         policy_version=0, action_mode=trajectory_pb2.ACTION_MODE_FREE, temperature=1.0)
        ep.policy_versions.append(0)
        out.append(ep)
    return out


def learner_round(eps, ledger_dir: Path | None) -> float:
    cfg = LearnerConfig(model="unused", batch_episodes=16, buffer_capacity=len(eps) + 16, group_timeout_s=3600)
    ledger = EpisodeLedger(ledger_dir / f"{uuid.uuid4().hex}.sqlite") if ledger_dir else None
    buf = EpisodeBuffer(cfg, vocab_size=100_000, ledger=ledger)
    t0 = time.perf_counter()
    for ep in eps:
        buf.add(ep, 0)
    if ledger is not None:
        ids = [ep.episode_id for ep in eps]
        for k in range(0, len(ids), 16):
            ledger.trained(ids[k:k + 16], 1 + k // 16)
    seconds = time.perf_counter() - t0
    if ledger is not None:
        ledger.close()
    return seconds / len(eps)


def actor_round(eps, spool_dir: Path | None, keep: bool) -> float:
    led = EpisodeSpool(spool_dir, uuid.uuid4().hex, keep_payloads=keep) if spool_dir else ActorLedger()
    t0 = time.perf_counter()
    for ep in eps:
        led.generated(ep)
    ids = [ep.episode_id for ep in eps]
    for k in range(0, len(ids), 16):   # the sender acks a push batch (16) at a time
        led.acked(ids[k:k + 16])
    seconds = time.perf_counter() - t0
    led.close()
    return seconds / len(eps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=2000)
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    eps = episodes(a.episodes, a.turns, a.tokens)
    size = eps[0].ByteSize()
    times: dict[str, list[float]] = {k: [] for k in ("buffer", "buffer+ledger", "actor memory", "actor spool ids",
                                                     "actor spool payloads")}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for _ in range(a.rounds):   # alternate the arms within each round
            times["buffer"].append(learner_round(eps, None))
            times["buffer+ledger"].append(learner_round(eps, d))
            times["actor memory"].append(actor_round(eps, None, False))
            times["actor spool ids"].append(actor_round(eps, d, False))
            times["actor spool payloads"].append(actor_round(eps, d, True))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{a.episodes} episodes of {size:,} bytes ({a.turns} turns x {a.tokens} tokens), median of {a.rounds} rounds")
    print(f"{'arm':>22} | us/episode")
    for k, v in med.items():
        print(f"{k:>22} | {v * 1e6:10.1f}")
    ledger_us = (med["buffer+ledger"] - med["buffer"]) * 1e6
    spool_us = (med["actor spool payloads"] - med["actor memory"]) * 1e6
    print(f"learner ledger adds {ledger_us:.0f} us per episode; actor spool (payloads) adds {spool_us:.0f} us")
    print(json.dumps({"episode_bytes": size, "us_per_episode": {k: round(v * 1e6, 1) for k, v in med.items()},
                      "ledger_added_us": round(ledger_us, 1), "spool_added_us": round(spool_us, 1),
                      "ledger_vs_buffer": round(med["buffer+ledger"] / med["buffer"], 2)}))


if __name__ == "__main__":
    main()
