"""ActionHeadConfig: the flow-matching action-head policy, importable without torch.

One model shared by the actor (``EngineConfig.action_head``) and the learner
(``LearnerConfig.action_head``): both sides must build the same network and the
same SDE, or the actor's log-probs and the learner's would describe different
distributions.
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ActionHeadConfig(BaseModel):
    """A VLM/vision backbone plus a flow-matching expert that outputs an H x D action chunk."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    # --- the chunk ---
    horizon: int = Field(8, ge=1, le=256)
    """H: actions per chunk (one decision = one chunk, executed by the env in order)."""
    action_dim: int = Field(2, ge=1, le=64)
    """D: dimensions of one action (must equal the env spec's action_dim)."""

    # --- the flow and its SDE ---
    steps: int = Field(4, ge=1, le=64)
    """K: denoising steps from noise (t = 0) to the chunk (t = 1)."""
    sde: Literal["reinflow", "flow_grpo"] = "reinflow"
    """Noise injected per step, making every step a Gaussian transition with a log-prob: `reinflow`
    (Zhang et al. 2025: Euler mean x + v dt, std noise_std sqrt(dt)) or `flow_grpo` (Liu et al. 2025: the
    marginal-preserving drift v - noise_std^2 / (2 (1 - t)) (x - t v), same std)."""
    noise_std: float = Field(0.5, gt=0, le=5)
    """sigma of the injected noise (exploration); the chunk's std about the ODE path is about sigma."""
    noise_std_final: float | None = Field(None, gt=0, le=5)
    """Anneal sigma linearly from noise_std to this over noise_decay_updates policy versions (None = constant).
    A fixed large sigma keeps the sampled policy far from the deterministic one being evaluated, and the
    noise-dominated returns then push the learnt mean around after it has found the goal; shrinking sigma
    as it learns is what ReinFlow's bounded, decaying noise does. Actor and learner both take sigma from the
    policy version (``sigma_at``), so their log-probs describe the same distribution."""
    noise_decay_updates: int = Field(500, ge=1)
    """Policy versions over which sigma goes from noise_std to noise_std_final."""
    x0_std: float = Field(1.0, gt=0, le=10)
    """Std of the starting noise x_0 (1 = the flow-matching prior). x_0 is not part of the log-prob (its density
    does not depend on the weights), so the randomness it carries into the chunk gets no credit; an RL run from
    scratch learns faster when it is small and the credited SDE noise (noise_std) does the exploring."""
    action_scale: float = Field(1.0, gt=0)
    """Chunks are produced in units of this; the env receives chunk x action_scale."""

    init_seed: int | None = Field(None, ge=0)
    """Seed of the initial weights, which actor and learner must share (their first log-probs are of the same
    network). None = the caller's seed: `atlasrl up` sets run.seed on both sides, a lone engine or learner 0."""

    micro_batch: int = Field(64, ge=1, le=65536)
    """Learner: decisions per forward/backward pass (the text policies' micro_batch_tokens does not apply)."""

    # --- the expert network ---
    width: int = Field(64, ge=8, le=4096)
    """Expert transformer width."""
    depth: int = Field(2, ge=1, le=64)
    """Expert decoder layers (self-attention over action tokens, cross-attention to the backbone tokens)."""
    heads: int = Field(4, ge=1, le=64)
    """Attention heads of the expert."""

    # --- AsyncVLA options ---
    schedule: Literal["uniform", "async"] = "uniform"
    """`uniform`: every action token shares t_k = k / K (synchronous flow matching). `async`: token h follows
    t_{k,h} = (k / K) ** gamma_h, gamma_h = exp(schedule_skew * (2 h / (H - 1) - 1)): near-term actions are
    denoised ahead of far ones (AsyncVLA's non-uniform schedule)."""
    schedule_skew: float = Field(0.5, ge=0, le=3)
    """How far apart the per-token schedules are (0 = uniform)."""
    confidence_head: bool = False
    """Add AsyncVLA's confidence rater: one score in (0, 1) per action token of a finished chunk."""
    refine_threshold: float = Field(0.0, ge=0, le=1)
    """At inference, tokens whose confidence is below this are re-noised and denoised again (0 = never)."""
    refine_time: float = Field(0.5, gt=0, lt=1)
    """Refinement re-noises a token back to this time (1 = clean)."""
    refine_steps: int = Field(2, ge=1, le=64)
    """Denoising steps of a refinement pass."""

    # --- backbone ---
    backbone: Literal["hf_vl", "atlas"] = "atlas"
    """`hf_vl`: any HF VL model directory (`model`, e.g. the tiny Qwen2.5-VL); its last hidden states over the
    prompt are the expert's context. `atlas`: AtlasVLA's composition (vision parts below + a causal LM)."""
    model: str = ""
    """hf_vl: the VL model directory. atlas: the language model directory (a Qwen3/Qwen2 causal LM); empty =
    no language tokens."""
    image_size: int = Field(64, ge=8, le=1024)
    """atlas: images are resized to this square before the vision parts."""
    patch_size: int = Field(8, ge=2, le=64)
    """atlas: patch embedding stride (and the ViT's patch size)."""
    vision_width: int = Field(64, ge=8, le=4096)
    """atlas: width of the patch embedding and the stand-in geometry encoder."""
    keypoints: int = Field(0, ge=0, le=256)
    """atlas: spatial-softmax keypoints (Levine et al. 2016's visuomotor layer): a small conv net whose every
    channel becomes the expected (x, y) of its activation, one token each; 0 = none. Where things are is what
    reaching needs, and a patch embedding alone learns it slowly."""
    vit: str = ""
    """atlas: a DINOv2-style ViT tower: `tiny` (built offline, random weights) or an HF Dinov2 directory;
    empty = the patch embedding alone."""
    geometry: str = ""
    """atlas: geometry encoder fused with the vision tokens: `standin` (a small conv net with VGGT's interface:
    image -> per-patch tokens), or a `torch.export` file (.pt2) mapping (B, 3, H, W) float images in [0, 1] to
    (B, N, C) tokens (e.g. a traced VGGT aggregator; VGGT weights are not shipped); empty = none."""
    freeze: list[Literal["patch_embed", "keypoints", "vit", "geometry", "language", "backbone"]] = Field(default_factory=list)
    """Parts kept frozen by the learner (`backbone` = all of them)."""

    ONE_SIDED: ClassVar[frozenset[str]] = frozenset({"micro_batch", "refine_threshold", "refine_time", "refine_steps"})
    """Settings only one side reads (the learner's micro-batch, the actor's refinement); all others must agree."""

    def differences(self, other: ActionHeadConfig) -> list[str]:
        """Keys (outside ONE_SIDED) whose values differ: actor and learner would build different policies."""
        a, b = self.model_dump(), other.model_dump()
        return [k for k in a if k not in self.ONE_SIDED and a[k] != b[k]]

    def sigma_at(self, version: int) -> float:
        """The injected noise's sigma at a policy version (the one schedule actor and learner share)."""
        if self.noise_std_final is None:
            return self.noise_std
        frac = min(max(version, 0) / self.noise_decay_updates, 1.0)
        return self.noise_std + frac * (self.noise_std_final - self.noise_std)

    @model_validator(mode="after")
    def _check(self) -> ActionHeadConfig:
        if self.width % self.heads:
            raise ValueError(f"action_head.width ({self.width}) must divide by action_head.heads ({self.heads})")
        if self.backbone == "hf_vl" and not self.model:
            raise ValueError("action_head.model: the hf_vl backbone needs an HF VL model directory")
        if self.image_size % self.patch_size:
            raise ValueError(f"action_head.image_size ({self.image_size}) must divide by patch_size ({self.patch_size})")
        return self
