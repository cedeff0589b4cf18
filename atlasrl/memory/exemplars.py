"""Bounded, diversity-aware sets of success / failure key frames per family.

    bank = ExemplarBank(cfg)
    bank.add("frozenlake", Exemplar(...))             # may evict the most redundant frame
    hits = bank.top_k("frozenlake", frame, k=4)        # cosine similarity to the frame

Eviction: when a (family, outcome) set is full, the new frame joins the
candidates and the candidate whose highest cosine similarity to any other is
largest (the most redundant) is dropped; ties drop the oldest. A frame that
nearly duplicates a stored one thus replaces (or is refused in favour of) its
twin, and rare frames are never pushed out by common ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atlasrl.memory.config import ExemplarConfig
from atlasrl.memory.embedding import embed, shrink

OUTCOMES = ("success", "failure")
DUPLICATE_COSINE = 0.9995  # retrieval returns one of frames this similar (same-layout frames with the agent one cell apart: ~0.996)


@dataclass
class Exemplar:
    image: np.ndarray          # uint8 (H, W, 3), already shrunk
    caption: str
    outcome: str               # "success" | "failure"
    cause: str
    layout_key: str
    episode_id: str
    seq: int = 0               # insertion order (older = smaller)
    embedding: np.ndarray | None = None


class ExemplarBank:
    def __init__(self, cfg: ExemplarConfig):
        self.cfg = cfg
        self.sets: dict[tuple[str, str], list[Exemplar]] = {}
        self._sims: dict[tuple[str, str], np.ndarray] = {}  # pairwise cosine similarities of each set, kept in step
        self._seq = 0

    def make(self, frame: np.ndarray, **fields) -> Exemplar:
        image = shrink(frame, self.cfg.stored_side)
        return Exemplar(image=image, embedding=self.embed(image), **fields)

    def embed(self, frame: np.ndarray) -> np.ndarray:
        return embed(frame, self.cfg.embed_side, self.cfg.hist_bins)

    def add(self, family: str, ex: Exemplar) -> bool:
        """Insert; returns False when the new frame itself was the one evicted."""
        self._seq += 1
        ex.seq = self._seq
        key = (family, ex.outcome)
        items = self.sets.setdefault(key, [])
        sims = self._sims.get(key, np.zeros((0, 0), np.float32))
        new = _dot(np.stack([e.embedding for e in items]), ex.embedding) if items else np.zeros(0, np.float32)
        grown = np.empty((len(items) + 1, len(items) + 1), np.float32)
        grown[:-1, :-1], grown[-1, :-1], grown[:-1, -1], grown[-1, -1] = sims, new, new, 1.0
        items.append(ex)
        self._sims[key] = grown
        if len(items) <= self.cfg.capacity_per_outcome:
            return True
        victim = _most_redundant(grown, [e.seq for e in items])
        items.pop(victim)
        self._sims[key] = np.delete(np.delete(grown, victim, 0), victim, 1)
        return victim != len(items)  # the new frame was last

    def top_k(self, family: str, frame: np.ndarray | None, k: int) -> list[tuple[Exemplar, float]]:
        """Best k of the family: by cosine similarity to ``frame`` (near-copies skipped), else newest first alternating outcomes."""
        pool = [e for o in OUTCOMES for e in self.sets.get((family, o), [])]
        if k <= 0 or not pool:
            return []
        if frame is None:
            by_outcome = [sorted(self.sets.get((family, o), []), key=lambda e: -e.seq) for o in OUTCOMES]
            merged = [e for pair in _interleave(*by_outcome) for e in pair]
            return [(e, 0.0) for e in merged[:k]]
        sims = _dot(np.stack([e.embedding for e in pool]), self.embed(frame))
        chosen: list[int] = []
        for i in np.argsort(-sims, kind="stable"):
            # skip near-copies of a frame already chosen: k copies of one goal frame teach nothing
            if all(float(pool[i].embedding @ pool[j].embedding) < DUPLICATE_COSINE for j in chosen):
                chosen.append(int(i))
                if len(chosen) == k:
                    break
        return [(pool[i], float(sims[i])) for i in chosen]

    def count(self, family: str | None = None) -> int:
        return sum(len(v) for (f, _), v in self.sets.items() if family is None or f == family)

    def remove(self, family: str | None, layout_key: str | None = None) -> int:
        """Drop a family's frames (or one layout's, or all when family is None); returns how many."""
        removed = 0
        for key in list(self.sets):
            if family is not None and key[0] != family:
                continue
            keep = [e for e in self.sets[key] if layout_key and e.layout_key != layout_key]
            removed += len(self.sets[key]) - len(keep)
            self.sets[key] = keep
            self._sims[key] = _pairwise(keep)
            if not keep:
                del self.sets[key], self._sims[key]
        return removed

    # -- persistence -------------------------------------------------------------

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta, arrays = {"seq": self._seq, "items": []}, {}
        for (family, _), items in sorted(self.sets.items()):
            for e in items:
                i = len(meta["items"])
                meta["items"].append({"family": family, "caption": e.caption, "outcome": e.outcome, "cause": e.cause,
                                      "layout_key": e.layout_key, "episode_id": e.episode_id, "seq": e.seq})
                arrays[f"image:{i}"] = e.image
        return meta, arrays

    def load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        self.sets.clear()
        self._sims.clear()
        self._seq = int(meta["seq"])
        for i, m in enumerate(meta["items"]):
            image = np.asarray(arrays[f"image:{i}"], np.uint8)
            ex = Exemplar(image=image, caption=m["caption"], outcome=m["outcome"], cause=m["cause"],
                          layout_key=m["layout_key"], episode_id=m["episode_id"], seq=int(m["seq"]),
                          embedding=self.embed(image))
            self.sets.setdefault((m["family"], m["outcome"]), []).append(ex)
        self._sims = {key: _pairwise(items) for key, items in self.sets.items()}


def _dot(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    # einsum, not BLAS: for these tiny products BLAS thread start-up costs 10x more on busy cores
    return np.einsum("ij,j->i", matrix, vector)


def _pairwise(items: list[Exemplar]) -> np.ndarray:
    if not items:
        return np.zeros((0, 0), np.float32)
    emb = np.stack([e.embedding for e in items])
    return np.einsum("ij,kj->ik", emb, emb).astype(np.float32)


def _most_redundant(sims: np.ndarray, seqs: list[int]) -> int:
    """Index whose highest similarity to another item is largest; ties -> the oldest (smallest seq)."""
    others = sims.copy()
    np.fill_diagonal(others, -np.inf)
    redundancy = others.max(axis=1)
    ties = np.flatnonzero(redundancy >= redundancy.max() - 1e-6)
    return int(min(ties, key=lambda i: seqs[i]))


def _interleave(a: list, b: list):
    for i in range(max(len(a), len(b))):
        yield [x[i] for x in (a, b) if i < len(x)]
