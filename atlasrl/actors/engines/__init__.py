"""Generation engines: the interface (base.py) and the transformers / vLLM engines."""
from __future__ import annotations

from atlasrl.actors.engines.base import Engine, Generation, GenerationRequest, SamplingParams
from atlasrl.actors.engines.config import EngineConfig

__all__ = ["Engine", "EngineConfig", "Generation", "GenerationRequest", "SamplingParams", "make_engine"]


def make_engine(config: EngineConfig) -> Engine:
    """Build the engine named by ``config.kind`` (imports torch / vllm lazily)."""
    if config.kind == "transformers":
        from atlasrl.actors.engines.transformers_engine import TransformersEngine

        return TransformersEngine(config)
    if config.kind == "vllm":
        from atlasrl.actors.engines.vllm_engine import VllmEngine

        return VllmEngine(config)
    if config.kind == "action_head":
        from atlasrl.actors.engines.action_head_engine import ActionHeadEngine

        return ActionHeadEngine(config)
    raise ValueError(f"unknown engine kind {config.kind!r}")
