"""The generation engine interface shared by the transformers and vLLM engines.

    engine = make_engine(EngineConfig(kind="transformers", model=str(tiny_model_path("qwen2.5-vl"))))
    reqs = [GenerationRequest(messages=[system(SYS), user(obs_text, images=1)], images=[frame]),
            GenerationRequest(messages=[...], images=[...], choices=["Up", "Down", "Left", "Right"])]
    outs = engine.generate(reqs, SamplingParams(max_tokens=64, temperature=1.0))
    outs[0].prompt_ids, outs[0].token_ids, outs[0].logprobs, outs[0].text, outs[0].version
    engine.update_weights(7, model.state_dict().items())     # between generate calls
    engine.version                                           # -> 7

Log-prob contract (the learner recomputes exactly this with
``atlasrl.models.logprobs``): ``Generation.logprobs[i]`` is the log-prob of
``token_ids[i]`` under ``softmax(logits / T)`` over the full vocabulary, with
T = ``SamplingParams.temperature`` (T = 0 means greedy, and the log-probs are
then those of T = 1), with the ids of ``atlasrl.models.logprobs.banned_response_ids``
(a VL model's image placeholder) at -inf: never sampled, masked alike by the learner. They are the *tempered* distribution, i.e. the one the
token was drawn from, before top-p truncation (top-p only narrows what may be
drawn). Choice mode (``GenerationRequest.choices``): the same tempered logits
restricted at each step to the prefix trie of the choices' token ids
(atlasrl.models.choice) and renormalised over the allowed set; the output is
always exactly one choice followed by the end token, and ``choice_index`` says
which.

Engines are synchronous and not re-entrant: one ``generate`` or
``update_weights`` at a time (an internal lock enforces it); ``agenerate``
runs ``generate`` in a worker thread for asyncio callers.
"""
from __future__ import annotations

import abc
import asyncio
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 128              # response budget in tokens (free mode)
    temperature: float = 1.0           # 0 = greedy
    top_p: float = 1.0                 # nucleus sampling mass, (0, 1]
    stop: tuple[str, ...] = ()         # stop strings: tokens kept up to the one completing one, text cut at it
    include_stop_str_in_output: bool = True   # keep the stop string at the end of the text, so "</answer>"
                                              # stays parseable (unlike vLLM's default)
    seed: int | None = None            # seeds this call's sampling (reproducible given the same batch)

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass
class GenerationRequest:
    """One chat prompt: HF chat messages with ``{"type": "image"}`` parts (atlasrl.models.chat)."""

    messages: list[dict]
    images: Sequence[np.ndarray] = ()       # uint8 HxWx3, in the order of the image parts
    choices: Sequence[str] | None = None    # choice mode: the env's valid action strings


@dataclass
class Generation:
    prompt_ids: list[int]                   # prompt as fed to the model (template applied, images expanded)
    token_ids: list[int]                    # sampled response tokens (end token included when produced)
    logprobs: list[float]                   # per token, see the module doc
    text: str                               # decoded response, special tokens and stop string removed
    finish_reason: str                      # "stop" (end token / stop string / choice complete) | "length"
    version: int                            # weight version that produced it (its first token's, when it spans several)
    temperature: float                      # the request's temperature (TurnRecord.temperature)
    choice_index: int | None = None         # choice mode: index into GenerationRequest.choices
    choice_token_ids: list[list[int]] | None = None  # choice mode: candidates' ids (TurnRecord.choices)
    extra: dict[str, Any] = field(default_factory=dict)
    token_versions: list[int] = field(default_factory=list)  # per token, when weights changed mid-call (interrupt);
                                                             # empty: every token is ``version``'s


class Engine(abc.ABC):
    """Generates from chat prompts with the current weights; hot-swaps weights."""

    tokenizer: Any            # the policy's tokenizer (for rendering histories, decoding)

    @property
    @abc.abstractmethod
    def version(self) -> int:
        """Weight version now loaded (0 = the weights from the model directory)."""

    @abc.abstractmethod
    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[Generation]:
        """One batched generation; results in request order."""

    @abc.abstractmethod
    def update_weights(self, version: int, named_tensors: Iterable[tuple[str, Any]]) -> None:
        """Replace weights in place with HF-named tensors; new generations use them.

        Names in checkpoint form (``model.layers.*``, ``visual.*``) or transformers'
        module form (``model.language_model.*``) both work (atlasrl.models.names). The
        vLLM engine needs the full state dict; the transformers engine also takes a subset.
        Raises ValueError for unknown names, wrong shapes or missing tensors, before
        anything is changed.
        """

    async def agenerate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[Generation]:
        return await asyncio.to_thread(self.generate, requests, params)

    def close(self) -> None:  # noqa: B027 - optional hook: a no-op unless an engine holds resources
        """Release the model (idempotent)."""


class StagedWeights(abc.ABC):
    """``stage_weights`` for engines that can load a version in the middle of a generate call
    (``weight_swap="interrupt"``): the transformers and vLLM engines. An engine validates and prepares a version in
    ``_prepare_weights`` (raising ValueError before anything changes) and loads it in ``_apply_weights`` (its
    ``_lock`` held); its generate loop calls ``_load_pending`` where a swap may happen."""

    _lock: threading.Lock
    _version: int

    def _init_staging(self) -> None:
        self._pending: tuple[int, Any] | None = None   # staged (version, prepared weights) not loaded yet
        self._pending_lock = threading.Lock()

    @abc.abstractmethod
    def _prepare_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> Any:
        """The version checked against the model and ready to load."""

    @abc.abstractmethod
    def _apply_weights(self, version: int, prepared: Any) -> None:
        """Load a prepared version and make it ``version`` (the caller holds ``_lock``)."""

    def stage_weights(self, version: int, named_tensors: Iterable[tuple[str, Any]]) -> None:
        """Hand over a version without waiting (validated here, before anything changes): loaded at once when idle,
        else between two decode steps (interrupt) or at the end of the generate call in flight (drain). A newer
        version staged before the engine got to an older one replaces it; an older one never replaces a newer."""
        prepared = self._prepare_weights(named_tensors)
        with self._pending_lock:
            if self._pending is None or version > self._pending[0]:
                self._pending = (int(version), prepared)
        self._load_if_idle()

    def _load_if_idle(self) -> None:
        if self._pending is not None and self._lock.acquire(blocking=False):
            try:
                self._load_pending()
            finally:
                self._lock.release()

    def _pending_is_newer(self) -> bool:
        with self._pending_lock:
            return self._pending is not None and self._pending[0] > self._version

    def _load_pending(self) -> bool:
        """Load the staged version, if any (the caller holds ``_lock``); True when the weights changed."""
        with self._pending_lock:
            pending, self._pending = self._pending, None
        if pending is None or pending[0] <= self._version:
            return False
        self._apply_weights(*pending)
        return True
