"""The trained module: a Hugging Face causal LM (text or Qwen-VL) plus an optional PPO value head.

    policy = PolicyModel(lm, value_head=True)
    logp, entropy, values = policy(tf_batch, temperature, want_values=True)   # (B, R), (B, R), (B,) or None

Log-probs come from ``atlasrl.models.logprobs.response_logprobs``, the same code
the actor engines' distribution is defined by (temperature, choice-mode trie
masks, Qwen-VL M-RoPE positions and pixel values), so actor and learner cannot
drift apart. It is called inside this module's ``forward`` so FSDP2's root
hooks (embeddings, final norm, lm_head and value head live in the root group)
run around it. The value is read from the backbone's last hidden state at each
row's last prompt token (prompts are left-padded to a common end column).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from atlasrl.models.load import VL_MODEL_TYPES, load_model, read_config
from atlasrl.models.logprobs import TeacherForcedBatch, response_logprobs
from atlasrl.models.names import to_checkpoint_name


def load_lm(model_dir: str | Path) -> nn.Module:
    """The HF model in ``model_dir`` in fp32 (master weights), in train mode."""
    lm = load_model(model_dir, dtype="float32")
    lm.train()
    return lm


def load_lm_from_config(model_dir: str | Path) -> nn.Module:
    """The architecture of ``model_dir`` with fresh weights (checkpoint export overwrites them)."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(str(model_dir))
    if read_config(model_dir).get("model_type") in VL_MODEL_TYPES:
        return transformers.AutoModelForImageTextToText.from_config(config)
    return transformers.AutoModelForCausalLM.from_config(config)


class PolicyModel(nn.Module):
    def __init__(self, lm: nn.Module, value_head: bool = False):
        super().__init__()
        self.lm = lm
        self.is_vl = lm.config.model_type in VL_MODEL_TYPES
        hidden = lm.config.get_text_config().hidden_size
        self.value_head = nn.Linear(hidden, 1) if value_head else None
        if self.value_head is not None:
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)

    def forward(self, batch: TeacherForcedBatch, temperature: float, want_values: bool = False):
        captured: dict[str, torch.Tensor] = {}
        hook = None
        if want_values and self.value_head is not None:
            hook = self.lm.model.register_forward_hook(lambda _m, _i, out: captured.__setitem__("h", out.last_hidden_state))
        try:
            logp, entropy = response_logprobs(self.lm, batch, temperature, with_entropy=True)
        finally:
            if hook is not None:
                hook.remove()
        values = None
        if "h" in captured:
            last_prompt = int(batch.logits_index[0])          # column S - 1
            values = self.value_head(captured["h"][:, last_prompt]).squeeze(-1).float()
            if batch.row_map is not None:
                values = values[batch.row_map]                 # shared rows share a prompt, hence a value
        # Fresh tensors, not views: FSDP2 hooks the outputs for backward.
        return logp.clone(), entropy.clone(), None if values is None else values.clone()

    def hf_named_parameters(self):
        """(checkpoint-form HF name, parameter) of the LM only, in a fixed order (what actors load)."""
        for name, p in self.named_parameters():
            if name.startswith("lm."):
                yield to_checkpoint_name(name[len("lm."):], self.is_vl), p
