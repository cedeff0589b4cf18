"""Checks of a numeric action (``Action.values``, proto/atlasrl/v1/env.proto) against the env's spec.

    arr = numeric_action(tensor, spec)     # (n, action_dim) float64, clipped if the spec says so
    out = env.numeric_step(arr)

Every failure raises ``InvalidNumericAction`` whose message names the field, so the env server answers
INVALID_ARGUMENT for that action and leaves the env untouched.
"""
from __future__ import annotations

import numpy as np

from atlasrl import codec
from atlasrl.envserver.base import EnvSpecInfo, InvalidActionText
from atlasrl.v1 import tensor_pb2

FIELD = "step.actions[].values"
_FLOATS = (tensor_pb2.DTYPE_FLOAT32, tensor_pb2.DTYPE_FLOAT64)


class InvalidNumericAction(InvalidActionText):
    """A numeric action the env cannot take (a subclass, so hosts answer it like bad action text)."""


def numeric_action(t: tensor_pb2.Tensor, spec: EnvSpecInfo) -> np.ndarray:
    if not spec.numeric_actions:
        raise InvalidNumericAction(f"{FIELD}: env '{spec.env_id}' takes text actions only (spec.numeric_actions is false)")
    if t.dtype not in _FLOATS:
        name = tensor_pb2.DType.Name(t.dtype) if t.dtype in tensor_pb2.DType.values() else str(t.dtype)
        raise InvalidNumericAction(f"{FIELD}: dtype {name}; expected DTYPE_FLOAT32 or DTYPE_FLOAT64")
    D, n_max = spec.action_dim, max(spec.max_actions_per_turn, 1)
    shape = tuple(t.shape)
    ok = (len(shape) == 1 and shape[0] == D) or (len(shape) == 2 and shape[1] == D and 1 <= shape[0] <= n_max)
    if not ok:
        raise InvalidNumericAction(f"{FIELD}: shape {list(shape)}; expected [{D}] or [n, {D}] with 1 <= n <= {n_max}")
    try:
        arr = codec.decode(t, max_bytes=8 * D * n_max).astype(np.float64).reshape(-1, D)
    except codec.CodecError as e:
        raise InvalidNumericAction(f"{FIELD}: {e}") from None
    if not np.isfinite(arr).all():
        raise InvalidNumericAction(f"{FIELD}: holds non-finite values (NaN or inf)")
    low = np.asarray(spec.action_low, dtype=np.float64) if spec.action_low else None
    high = np.asarray(spec.action_high, dtype=np.float64) if spec.action_high else None
    outside = (low is not None and bool((arr < low).any())) or (high is not None and bool((arr > high).any()))
    if outside:
        if not spec.clip_actions:
            raise InvalidNumericAction(f"{FIELD}: values outside [{spec.action_low}, {spec.action_high}] "
                                       f"(range {arr.min():.4g}..{arr.max():.4g}) and this env does not clip (spec.clip_actions)")
        arr = np.clip(arr, low, high)
    return arr
