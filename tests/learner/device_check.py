"""A stand-in accelerator for CPU tests: which tensors did the code place on its device?

NCCL accepts only CUDA tensors, and CUDA refuses ops that mix devices; on a CPU host with gloo every tensor is
on the CPU and neither mistake shows. ``DeviceDiscipline(device)`` lets a test give the trainer a device of its
own, ``cpu:0`` (a CPU tensor always reports plain ``cpu``, so tensors cannot tell), and tracks placement
instead: a tensor is *on the device* when it was made by a factory called with ``device=<that device>``, moved
there with ``.to(<that device>)``, or computed from such a tensor (as a CUDA tensor's results stay on CUDA).
Every tensor atlasrl hands to a ``torch.distributed`` collective must be on the device; anything else is a
violation, recorded with the call site (what NCCL would refuse on a GPU host).

    with DeviceDiscipline(torch.device("cpu", 0)) as check:
        trainer = Trainer(cfg, rank, world, torch.device("cpu", 0))
        trainer.update(batch)
    assert not check.violations, check.violations
"""
from __future__ import annotations

import functools
import sys
from typing import Any

import torch
import torch.distributed as dist
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

TAG = "_atlasrl_on_device"
COLLECTIVES = ("all_reduce", "broadcast", "reduce", "all_gather", "all_gather_into_tensor", "reduce_scatter",
               "reduce_scatter_tensor", "all_to_all", "all_to_all_single", "scatter", "gather", "send", "recv")


def _on_device(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and getattr(t, TAG, False)


def _caller(skip: tuple[str, ...] = ("torch", "tests.learner.device_check", "functools")) -> tuple[str, str]:
    """(module, file:line) of the first frame outside torch and this module."""
    f = sys._getframe(2)
    while f is not None and f.f_globals.get("__name__", "").startswith(skip):
        f = f.f_back  # type: ignore[assignment]
    if f is None:
        return "", "?"
    return f.f_globals.get("__name__", ""), f"{f.f_code.co_filename}:{f.f_lineno}"


class _Placement(TorchFunctionMode):
    def __init__(self, device: torch.device):
        super().__init__()
        self.device = device

    def _is_device(self, d: Any) -> bool:
        if isinstance(d, torch.device | str):
            try:
                return torch.device(d) == self.device
            except RuntimeError:
                return False
        return False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        placed = self._is_device(kwargs.get("device"))
        if not placed and func in (torch.Tensor.to, torch.Tensor.cuda):
            placed = any(self._is_device(a) for a in args[1:])
        if not placed:
            placed = any(_on_device(a) for a in tree_flatten((args, kwargs))[0])
        if placed:
            def tag(t):
                if isinstance(t, torch.Tensor):
                    try:
                        setattr(t, TAG, True)
                    except (AttributeError, RuntimeError):   # a few C-level results take no attributes
                        pass
                return t
            tree_map(tag, out)
        return out


class DeviceDiscipline:
    """Records each tensor an atlasrl module passes to a collective off ``device`` (see the module doc)."""

    def __init__(self, device: torch.device, modules: tuple[str, ...] = ("atlasrl",)):
        self.device, self.modules = device, modules
        self.violations: list[str] = []
        self.checked = 0
        self._saved: dict[str, Any] = {}
        self._mode = _Placement(device)

    def _wrap(self, name: str, fn):
        @functools.wraps(fn)
        def checked(*args, **kwargs):
            module, where = _caller()
            if module.startswith(self.modules):
                for t in tree_flatten((args, kwargs))[0]:
                    if isinstance(t, torch.Tensor):
                        self.checked += 1
                        if not _on_device(t):
                            self.violations.append(f"{name} at {where}: a {tuple(t.shape)} {t.dtype} tensor not on "
                                                   f"the trainer's device {self.device}")
            return fn(*args, **kwargs)
        return checked

    def __enter__(self) -> DeviceDiscipline:
        for name in COLLECTIVES:
            fn = getattr(dist, name, None)
            if fn is not None:
                self._saved[name] = fn
                setattr(dist, name, self._wrap(name, fn))
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)
        for name, fn in self._saved.items():
            setattr(dist, name, fn)
