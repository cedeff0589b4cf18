"""The trained module: a Hugging Face causal LM plus an optional PPO value head.

    policy = PolicyModel(lm, value_head=True)
    logp, entropy, values = policy(**collate(seqs))     # [N], [N], [B] or None

One ``forward`` does everything so FSDP2's root hooks (embeddings, final norm,
lm_head, value head live in the root group) run around it. Logits are computed
only at the positions that score response tokens, and scored exactly as the
actor sampled: divided by the turn's temperature (when > 0), and in choice mode
restricted to the tokens that extend some candidate (trajectory.proto).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

VL_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl")


def load_lm(model_dir: str | Path, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The HF model in ``model_dir`` (text causal LM or Qwen2/2.5-VL), in train mode."""
    import transformers

    model_type = json.loads((Path(model_dir) / "config.json").read_text()).get("model_type", "")
    if model_type in VL_MODEL_TYPES:
        cls = transformers.AutoModelForImageTextToText
    else:
        cls = transformers.AutoModelForCausalLM
    lm = cls.from_pretrained(str(model_dir), dtype=dtype)
    lm.train()
    return lm


def load_lm_from_config(model_dir: str | Path) -> nn.Module:
    """The architecture of ``model_dir`` with fresh weights (checkpoint export overwrites them)."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(str(model_dir))
    if config.model_type in VL_MODEL_TYPES:
        return transformers.AutoModelForImageTextToText.from_config(config)
    return transformers.AutoModelForCausalLM.from_config(config)


def text_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """0, 1, 2, ... over the real tokens of each right-padded row (padding gets 0)."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.clamp_min(0) * attention_mask.long()


def scored_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: torch.Tensor,
                    choice_rows: torch.Tensor, choice_allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(target) and the entropy of the sampling distribution at each scored position.

    logits [N, V] (fp32), targets [N], temperature [N] (0 = greedy: raw logits),
    choice_rows [K] rows in choice mode, choice_allowed [K, M] allowed ids (-1 pad).
    """
    t = torch.where(temperature > 0, temperature, torch.ones_like(temperature))
    logits = logits / t.unsqueeze(-1)
    if choice_rows.numel():
        allowed = torch.zeros(choice_rows.numel(), logits.shape[-1], dtype=torch.bool, device=logits.device)
        allowed.scatter_(1, choice_allowed.clamp_min(0), choice_allowed >= 0)
        restricted = logits.index_select(0, choice_rows).masked_fill(~allowed, float("-inf"))
        logits = logits.index_copy(0, choice_rows, restricted)
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    p = logp_all.exp()
    entropy = -(p * logp_all.masked_fill(torch.isinf(logp_all), 0.0)).sum(-1)
    return logp, entropy


class PolicyModel(nn.Module):
    def __init__(self, lm: nn.Module, value_head: bool = False):
        super().__init__()
        self.lm = lm
        hidden = lm.config.get_text_config().hidden_size
        self.value_head = nn.Linear(hidden, 1) if value_head else None
        if self.value_head is not None:
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids, attention_mask, score_index, targets, temperature, choice_rows, choice_allowed,
                value_index=None, want_values: bool = False, **model_inputs):
        if "position_ids" not in model_inputs:   # VL callers pass M-RoPE positions
            model_inputs["position_ids"] = text_positions(attention_mask)
        out = self.lm.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **model_inputs)
        hidden = out.last_hidden_state.flatten(0, 1)
        logits = self.lm.lm_head(hidden.index_select(0, score_index)).float()
        logp, entropy = scored_logprobs(logits, targets, temperature, choice_rows, choice_allowed)
        values = None
        if want_values and self.value_head is not None:
            values = self.value_head(hidden.index_select(0, value_index)).squeeze(-1).float()
        # Fresh tensors, not views: FSDP2 hooks the outputs for backward.
        return logp.clone(), entropy.clone(), None if values is None else values.clone()

    def hf_named_parameters(self):
        """(HF name, parameter) of the LM only, in a fixed order (what actors load)."""
        for name, p in self.named_parameters():
            if name.startswith("lm."):
                yield name[len("lm."):], p
