"""The action-head engine: the Engine interface for a backbone + flow-expert policy (no text generation).

    engine = make_engine(EngineConfig(kind="action_head", model="", action_head=ActionHeadConfig(...)))
    outs = engine.generate([GenerationRequest(messages=[user(instruction, images=1)], images=[frame])],
                           SamplingParams(seed=7))
    outs[0].extra["chunk"]          # (H, D) float32: send as EnvClient.step({handle: chunk})
    outs[0].extra["path"], outs[0].extra["times"], outs[0].logprobs   # what the learner rescores (K log-probs)
    engine.update_weights(3, trainer.full_tensors(...))                  # same names as ActionHeadPolicy's

Batching, versions and weight swaps work as in the text engines: one ``generate`` per turn for every env,
one lock around generate and update_weights, ``version`` tags every output. Log-probs come from
``expert.path_log_probs``, the function the learner calls (atlasrl/policies/action_head/expert.py).
``Generation.token_ids`` is empty; ``text`` is the chunk as "dx dy, ..." for logs. SamplingParams:
``seed`` seeds the SDE noise; temperature 0 runs the deterministic ODE (evaluation), whose log-probs are
then those of the SDE at the same path (not a sample of it); other fields do not apply.
``model``: a directory exported by `atlasrl learner export` from an action-head run loads its weights and
version; any other value (the run's LM directory) keeps the seeded initial weights the learner also starts from.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from atlasrl.actors.engines.base import Engine, Generation, GenerationRequest, SamplingParams
from atlasrl.actors.engines.config import EngineConfig
from atlasrl.policies.action_head.policy import ActionHeadPolicy, is_exported


def instruction_of(messages: Sequence[dict]) -> str:
    """The text of the last user message (the backbone's language input)."""
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            return " ".join(p.get("text", "") for p in c or [] if p.get("type") == "text")
    return ""


class ActionHeadEngine(Engine):
    def __init__(self, config: EngineConfig):
        if config.action_head is None:
            raise ValueError("engine kind action_head needs engine.action_head (the policy's config)")
        if config.threads:
            torch.set_num_threads(config.threads)
        self.config = config
        self.device = torch.device(config.device)
        self.policy = ActionHeadPolicy(config.action_head, seed=config.seed).to(self.device).eval()
        self.tokenizer = getattr(self.policy.backbone, "tokenizer", None)
        self._version = 0
        if is_exported(config.model):   # a trained policy (`atlasrl learner export`); otherwise the seeded init
            self._version = self.policy.load_exported(config.model)
        self._lock = threading.Lock()
        self._rng = torch.Generator(device=self.device).manual_seed(config.seed)

    @property
    def version(self) -> int:
        return self._version

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[Generation]:
        with self._lock:
            gen = torch.Generator(device=self.device).manual_seed(params.seed) if params.seed is not None else self._rng
            out: list[Generation] = []
            step = self.config.max_batch_size
            for i in range(0, len(requests), step):
                out += self._batch(requests[i : i + step], params, gen)
            return out

    def _batch(self, requests: Sequence[GenerationRequest], params: SamplingParams, gen) -> list[Generation]:
        images = []
        for n, r in enumerate(requests):
            if len(r.images) != 1:
                raise ValueError(f"request {n}: the action-head engine takes exactly one image per request, got {len(r.images)}")
            images.append(np.asarray(r.images[0], dtype=np.uint8))
        bb = self.policy.backbone
        ids = [bb.tokenize(instruction_of(r.messages), img) for r, img in zip(requests, images)]
        acted = self.policy.act(ids, images, generator=gen, stochastic=params.temperature > 0, version=self._version)
        chunks, path, times, logp = (t.float().cpu().numpy() for t in (acted.chunks, acted.path, acted.times, acted.logp))
        res = []
        for b in range(len(requests)):
            res.append(Generation(
                prompt_ids=ids[b], token_ids=[], logprobs=logp[b].tolist(),
                text=", ".join(" ".join(f"{z:.3f}" for z in v) for v in chunks[b]),
                finish_reason="stop", version=self._version, temperature=params.temperature,
                extra={"chunk": chunks[b], "path": path[b], "times": times[b],
                       "refined": None if acted.refined is None else acted.refined[b].cpu().numpy()}))
        return res

    def update_weights(self, version: int, named_tensors: Iterable[tuple[str, Any]]) -> None:
        """Replace parameters by name (ActionHeadPolicy's names); all checked before any is changed."""
        with self._lock:
            self.policy.assign(named_tensors)
            self._version = version
