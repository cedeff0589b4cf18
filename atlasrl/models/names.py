"""Parameter names: checkpoint (on-disk HF) form <-> the in-memory module form.

transformers 5 keeps Qwen-VL checkpoints as ``model.layers.*`` / ``visual.*``
but names the loaded modules ``model.language_model.layers.*`` /
``model.visual.*``. Weight updates may use either; engines map both to what
they hold. vLLM's loaders read the checkpoint form.
"""
from __future__ import annotations

import re

# (module form, checkpoint form) prefixes for Qwen2-VL / Qwen2.5-VL.
_VL_PREFIXES = [
    ("model.language_model.", "model."),
    ("model.visual.", "visual."),
]


def to_checkpoint_name(name: str, is_vl: bool) -> str:
    if not is_vl:
        return name
    for module_prefix, ckpt_prefix in _VL_PREFIXES:
        if name.startswith(module_prefix):
            return ckpt_prefix + name[len(module_prefix):]
    return name


def to_module_name(name: str, is_vl: bool) -> str:
    if not is_vl or name.startswith(("model.language_model.", "model.visual.", "lm_head.")):
        return name
    if name.startswith("visual."):
        return "model.visual." + name[len("visual."):]
    return re.sub(r"^model\.", "model.language_model.", name)
