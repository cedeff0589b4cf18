"""The critic's scoring backends: oracle (simulator state), value (small trained CNN), hf (VLAC-style prompts).

    backend = make_backend(cfg)                       # chosen by CriticConfig.backend
    scores = backend.score([Item(task, frame, oracle, reference)])   # one model call for the whole batch
    scores[0].progress, scores[0].done_probability

Backends know nothing of gRPC; the service (service.py) validates input and batches items of concurrent
requests into one ``score`` call. ``score`` is synchronous (torch) and runs in a worker thread.
"""
from __future__ import annotations

import abc
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from atlasrl.critic.config import CriticConfig
from atlasrl.v1 import critic_pb2

log = logging.getLogger("atlasrl.critic")


@dataclass
class Item:
    """One frame to judge, with what the backends may read about it."""

    task: str
    image: np.ndarray                     # uint8 (H, W, 3)
    oracle: critic_pb2.OracleState | None = None
    reference: np.ndarray | None = None   # the episode's first frame (pair-wise backends)


@dataclass
class Score:
    progress: float
    done_probability: float


class Backend(abc.ABC):
    name: str = ""
    model: str = ""
    device: str = "cpu"
    pairwise: bool = False     # judges a frame against the episode's first one (needs Item.reference)
    needs_oracle: bool = False

    @abc.abstractmethod
    def score(self, items: Sequence[Item]) -> list[Score]:
        """Progress and done probability of every item, in order."""

    def compare(self, task: str, a: Item, b: Item) -> float:
        """Progress of b minus progress of a, in [-1, 1]."""
        sa, sb = self.score([a, b])
        return float(np.clip(sb.progress - sa.progress, -1.0, 1.0))


class OracleBackend(Backend):
    """Privileged: done = the env's success flag; progress = 1 on success, else closeness of agent to goal."""

    name = "oracle"
    needs_oracle = True

    def score(self, items: Sequence[Item]) -> list[Score]:
        return [oracle_score(it.oracle or critic_pb2.OracleState()) for it in items]


def oracle_score(o: critic_pb2.OracleState) -> Score:
    if o.success:
        return Score(1.0, 1.0)
    progress = 0.0
    if o.has_agent and o.has_goal and o.grid_rows and o.grid_cols:
        span = max(1, o.grid_rows + o.grid_cols - 2)
        dist = abs(o.agent.row - o.goal.row) + abs(o.agent.col - o.goal.col)
        progress = max(0.0, 1.0 - dist / span) * 0.9   # below 1: only success is done
    return Score(progress, 0.0)


class ValueBackend(Backend):
    """The small convolutional critic (atlasrl/critic/value_net.py), trained or seeded-random."""

    name = "value"

    def __init__(self, cfg: CriticConfig, device: str):
        from atlasrl.critic.value_net import load_or_init

        self.net, self.side = load_or_init(cfg.model or None, seed=cfg.seed, device=device)
        self.model = cfg.model
        self.device = device

    def score(self, items: Sequence[Item]) -> list[Score]:
        from atlasrl.critic.value_net import predict

        progress, done = predict(self.net, [it.image for it in items], [it.task for it in items], self.side,
                                 self.device)
        return [Score(float(p), float(d)) for p, d in zip(progress, done)]


# VLAC's pair-wise critic prompt (evo_vlac: "compare the two images ... progress difference in percent").
PAIR_PROMPT = ("The task is: {task}\nThe first image is the reference state, the second image the current state. "
               "Compared with the reference, how much has the task progressed? Answer with a signed percentage "
               "between -100 and 100.")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def parse_percent(text: str) -> float | None:
    """The first number of a model's answer as a fraction in [-1, 1]; None when it wrote none."""
    m = _NUMBER.search(text)
    if m is None:
        return None
    return float(np.clip(float(m.group()) / 100.0, -1.0, 1.0))


class HfBackend(Backend):
    """A local Hugging Face VL model (e.g. VLAC's Qwen2.5-VL) asked VLAC's pair-wise progress question.

    Per-frame progress is the pair-wise delta from the episode's first frame (clipped to [0, 1]), as VLAC
    derives its value list; done follows VLAC's threshold rule. An answer without a number counts as no
    progress and is counted in ``unparsed``.
    """

    name = "hf"
    pairwise = True

    def __init__(self, cfg: CriticConfig, device: str):
        from atlasrl.actors.engines import EngineConfig, SamplingParams, make_engine
        from atlasrl.models.load import is_vl_dir

        if not is_vl_dir(cfg.model):
            raise ValueError(f"model {cfg.model!r} is not a vision-language model directory")
        self.engine = make_engine(EngineConfig(kind="transformers", model=cfg.model, device=device,
                                               dtype="bfloat16" if device.startswith("cuda") else "float32",
                                               max_images_per_prompt=2))
        self.params = SamplingParams(max_tokens=cfg.hf_max_new_tokens, temperature=0.0)
        self.threshold = cfg.done_threshold
        self.model = cfg.model
        self.device = device
        self.unparsed = 0

    def _deltas(self, task: str, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[float]:
        from atlasrl.actors.engines import GenerationRequest
        from atlasrl.models.chat import user

        reqs = [GenerationRequest(messages=[user(PAIR_PROMPT.format(task=task), images=2)], images=[a, b])
                for a, b in pairs]
        out = []
        for g in self.engine.generate(reqs, self.params):
            d = parse_percent(g.text)
            if d is None:
                self.unparsed += 1
            out.append(d or 0.0)
        return out

    def score(self, items: Sequence[Item]) -> list[Score]:
        by_task: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            by_task.setdefault(it.task, []).append(i)
        scores: list[Score | None] = [None] * len(items)
        for task, idx in by_task.items():
            pairs = [(_reference(items[i]), items[i].image) for i in idx]
            for i, d in zip(idx, self._deltas(task, pairs)):
                p = float(np.clip(d, 0.0, 1.0))
                scores[i] = Score(p, 1.0 if p >= self.threshold else p / self.threshold * 0.5)
        return [s for s in scores if s is not None]

    def compare(self, task: str, a: Item, b: Item) -> float:
        return self._deltas(task, [(a.image, b.image)])[0]


def _reference(it: Item) -> np.ndarray:
    """The frame VLAC compares against: the episode's first, or the frame itself when none was sent."""
    return it.reference if it.reference is not None else it.image


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    from atlasrl.devices import visible_gpus

    return "cuda" if visible_gpus() else "cpu"


def make_backend(cfg: CriticConfig) -> Backend:
    if cfg.backend == "oracle":
        return OracleBackend()
    device = resolve_device(cfg.device)
    if device.startswith("cuda") and cfg.memory_fraction is not None:
        import torch

        index = int(device.split(":")[1]) if ":" in device else 0
        torch.cuda.set_per_process_memory_fraction(cfg.memory_fraction, index)   # share the GPU with an actor
    if cfg.backend == "hf":
        return HfBackend(cfg, device)
    return ValueBackend(cfg, device)
