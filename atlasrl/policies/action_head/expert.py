"""The flow-matching action expert, its SDE and the one log-prob function actor and learner share.

    expert = FlowExpert(cfg, context_dim=128)
    times = time_grid(cfg, batch=B)                               # (B, K + 1, H): per-token times
    path, logp = sample_chunk(expert, ctx, ctx_mask, times, cfg)  # path (B, K + 1, H, D); chunk = path[:, -1]
    logp = path_log_probs(expert, ctx, ctx_mask, path, times, cfg)  # (B, K): what the learner recomputes

Conventions (rectified flow, as pi0/SmolVLA): x_t = t x_1 + (1 - t) x_0 with x_0 ~ N(0, I) noise at t = 0
and the action chunk x_1 at t = 1; the expert predicts the velocity v = x_1 - x_0. Sampling the ODE is
deterministic, so it has no log-prob. Injecting noise at every step (an SDE) makes each step a Gaussian
transition x_{k+1} ~ N(mu_k(x_k), diag(std_k^2)), and the log-prob of a chunk is the sum over the K
transitions of the recorded path: tractable, and exactly recomputable by the learner from the path.

- ``reinflow`` (ReinFlow, Zhang et al. 2025): mu = x + v dt, std = sigma sqrt(dt).
- ``flow_grpo`` (Flow-GRPO, Liu et al. 2025): the SDE with the ODE's marginals,
  mu = x + [v - sigma^2 / (2 (1 - t)) (x - t v)] dt, std = sigma sqrt(dt)
  (the score of x_t is -(x - t v) / (1 - t) in this convention).

Times are per action token (AsyncVLA): ``times[b, k, h]``. A token whose time does not move in a step
(dt = 0: held during refinement) keeps its value exactly and adds nothing to the log-prob.

Why not a library: LeRobot's SmolVLA/pi0 (``lerobot`` 0.6) bring their own VLM stack and training loop and
a heavy dependency set; ``flow-matching`` 1.0 and ``torchcfm`` give ODE paths and solvers but no stochastic
sampler with per-step log-probs and no per-token times. The expert itself is ~100 lines.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from atlasrl.policies.action_head.config import ActionHeadConfig

LOG_2PI = math.log(2 * math.pi)


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of times in [0, 1]: (...,) -> (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=t.dtype, device=t.device) / max(half - 1, 1))
    angles = t.unsqueeze(-1) * 1000.0 * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class FlowExpert(nn.Module):
    """Velocity of every action token given the noisy chunk, its per-token times and the backbone's tokens.

    Action tokens attend to each other and, by cross-attention, to the backbone's context tokens (the
    pi0/SmolVLA expert layout). Optional confidence head (AsyncVLA's rater) on the same features.
    """

    def __init__(self, cfg: ActionHeadConfig, context_dim: int):
        super().__init__()
        W = cfg.width
        self.cfg = cfg
        self.action_in = nn.Linear(cfg.action_dim, W)
        self.time_mlp = nn.Sequential(nn.Linear(W, W), nn.SiLU(), nn.Linear(W, W))
        self.position = nn.Parameter(torch.zeros(cfg.horizon, W))
        self.context_in = nn.Linear(context_dim, W)
        self.layers = nn.ModuleList(
            nn.TransformerDecoderLayer(W, cfg.heads, dim_feedforward=2 * W, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(W)
        self.velocity_out = nn.Linear(W, cfg.action_dim)
        self.confidence_out = nn.Linear(W, 1) if cfg.confidence_head else None
        nn.init.normal_(self.position, std=0.02)

    def features(self, x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, H, D), t (B, H), ctx (B, N, C), ctx_mask (B, N) True = real token -> (B, H, W)."""
        h = self.action_in(x) + self.time_mlp(time_embedding(t, self.cfg.width)) + self.position
        memory = self.context_in(ctx)
        pad = None if ctx_mask is None else ~ctx_mask
        for layer in self.layers:
            h = layer(h, memory, memory_key_padding_mask=pad)
        return self.norm(h)

    def forward(self, x, t, ctx, ctx_mask=None) -> torch.Tensor:
        """The velocity (B, H, D)."""
        return self.velocity_out(self.features(x, t, ctx, ctx_mask))

    def confidence(self, chunk: torch.Tensor, ctx: torch.Tensor, ctx_mask=None) -> torch.Tensor:
        """AsyncVLA's rating of a finished chunk (t = 1): (B, H) in (0, 1)."""
        if self.confidence_out is None:
            raise ValueError("this expert has no confidence head (action_head.confidence_head = false)")
        t = torch.ones(chunk.shape[:2], dtype=chunk.dtype, device=chunk.device)
        return torch.sigmoid(self.confidence_out(self.features(chunk, t, ctx, ctx_mask)).squeeze(-1))


def time_grid(cfg: ActionHeadConfig, batch: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Per-token times (B, K + 1, H): uniform t_k = k / K, or AsyncVLA's t_{k,h} = (k / K) ** gamma_h."""
    K, H = cfg.steps, cfg.horizon
    base = torch.linspace(0.0, 1.0, K + 1, dtype=torch.float64)
    if cfg.schedule == "async" and H > 1 and cfg.schedule_skew > 0:
        gamma = torch.exp(cfg.schedule_skew * (2 * torch.arange(H, dtype=torch.float64) / (H - 1) - 1))
        grid = base.unsqueeze(1) ** gamma.unsqueeze(0)
    else:
        grid = base.unsqueeze(1).expand(K + 1, H)
    return grid.to(dtype=dtype, device=device).unsqueeze(0).expand(batch, K + 1, H).contiguous()


def step_mean_std(cfg: ActionHeadConfig, x: torch.Tensor, v: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor,
                  sigma: float | None = None):
    """Mean and std of one SDE transition from x at times t0 to t1 (per token). x, v (..., H, D); t (..., H).
    ``sigma``: the injected noise (default cfg.noise_std; ``cfg.sigma_at(version)`` under a noise schedule)."""
    sigma = cfg.noise_std if sigma is None else sigma
    dt = (t1 - t0).unsqueeze(-1)
    t = t0.unsqueeze(-1)
    drift = v
    if cfg.sde == "flow_grpo":
        # t < 1 wherever dt > 0; held tokens (dt = 0, maybe t = 1) are masked below
        safe = torch.where(dt > 0, 1 - t, torch.ones_like(t))
        drift = v - sigma**2 / (2 * safe) * (x - t * v)
    mean = torch.where(dt > 0, x + drift * dt, x)
    std = sigma * dt.clamp_min(0).sqrt()
    return mean, std.expand_as(mean)


def gaussian_log_prob(x_next: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Sum over (H, D) of log N(x_next; mean, std^2), skipping deterministic entries (std = 0): (...,)."""
    live = std > 0
    safe = torch.where(live, std, torch.ones_like(std))
    z = (x_next - mean) / safe
    lp = -0.5 * z**2 - torch.log(safe) - 0.5 * LOG_2PI
    return torch.where(live, lp, torch.zeros_like(lp)).sum(dim=(-2, -1))


def path_log_probs(expert: FlowExpert, ctx: torch.Tensor, ctx_mask: torch.Tensor | None, path: torch.Tensor,
                   times: torch.Tensor, cfg: ActionHeadConfig, sigma: float | None = None) -> torch.Tensor:
    """THE log-prob of a sampled chunk, per denoising step: (B, K). Actor and learner both call this.

    path (B, K + 1, H, D) = x_0 (noise) ... x_K (the chunk); times (B, K + 1, H). All K velocities come from
    one batched expert call (steps folded into the batch), so the actor's value and the learner's are the
    same computation on the same inputs. ``sigma``: the noise of the policy version that is scored.
    """
    B, K1, H, D = path.shape
    K = K1 - 1
    x = path[:, :-1].reshape(B * K, H, D)
    t0, t1 = times[:, :-1].reshape(B * K, H), times[:, 1:].reshape(B * K, H)
    rep = lambda a: a.unsqueeze(1).expand(B, K, *a.shape[1:]).reshape(B * K, *a.shape[1:])  # noqa: E731
    v = expert(x, t0, rep(ctx), None if ctx_mask is None else rep(ctx_mask))
    mean, std = step_mean_std(cfg, x, v, t0, t1, sigma)
    return gaussian_log_prob(path[:, 1:].reshape(B * K, H, D), mean, std).view(B, K)


@torch.no_grad()
def sample_chunk(expert: FlowExpert, ctx: torch.Tensor, ctx_mask: torch.Tensor | None, times: torch.Tensor,
                 cfg: ActionHeadConfig, generator: torch.Generator | None = None, x0: torch.Tensor | None = None,
                 stochastic: bool = True, sigma: float | None = None) -> torch.Tensor:
    """Run the SDE (or the ODE when ``stochastic`` is False) along ``times``; returns the path (B, K + 1, H, D).

    ``x0`` starts from a given state (refinement); default N(0, I). Held tokens (dt = 0) stay unchanged.
    """
    B, K1, H = times.shape
    if x0 is None:
        x0 = cfg.x0_std * torch.randn(B, H, cfg.action_dim, generator=generator, device=ctx.device, dtype=ctx.dtype)
    x = x0
    path = [x]
    for k in range(K1 - 1):
        v = expert(x, times[:, k], ctx, ctx_mask)
        mean, std = step_mean_std(cfg, x, v, times[:, k], times[:, k + 1], sigma)
        if stochastic:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            x = mean + std * noise
        else:
            x = mean
        path.append(x)
    return torch.stack(path, dim=1)


@torch.no_grad()
def refine(expert: FlowExpert, ctx: torch.Tensor, ctx_mask: torch.Tensor | None, chunk: torch.Tensor,
           cfg: ActionHeadConfig, generator: torch.Generator | None = None,
           sigma: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """AsyncVLA's self-correction: re-noise only the tokens rated below ``cfg.refine_threshold`` back to
    ``cfg.refine_time`` and denoise them again (deterministically) while the others stay exactly as they are.

    Returns (refined chunk (B, H, D), mask (B, H) of the tokens that were refined).
    """
    conf = expert.confidence(chunk, ctx, ctx_mask)
    redo = conf < cfg.refine_threshold
    if not bool(redo.any()):
        return chunk, redo
    tr = cfg.refine_time
    B, H, _ = chunk.shape
    noise = torch.randn(chunk.shape, generator=generator, device=chunk.device, dtype=chunk.dtype)
    m = redo.unsqueeze(-1)
    start = torch.where(m, tr * chunk + (1 - tr) * noise, chunk)
    steps = torch.linspace(tr, 1.0, cfg.refine_steps + 1, dtype=chunk.dtype, device=chunk.device)
    times = torch.where(redo.unsqueeze(1), steps.view(1, -1, 1), torch.ones((), dtype=chunk.dtype, device=chunk.device))
    path = sample_chunk(expert, ctx, ctx_mask, times.expand(B, -1, H).contiguous(), cfg, x0=start, stochastic=False,
                        sigma=sigma)
    return torch.where(m, path[:, -1], chunk), redo


def flow_matching_loss(expert: FlowExpert, ctx: torch.Tensor, ctx_mask: torch.Tensor | None, chunk: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Supervised flow matching (behaviour cloning warm start): || v(x_t, t) - (x_1 - x_0) ||^2 at per-token times."""
    x0 = torch.randn(chunk.shape, generator=generator, dtype=chunk.dtype, device=chunk.device)
    t = torch.rand(chunk.shape[:2], generator=generator, dtype=chunk.dtype, device=chunk.device)
    xt = t.unsqueeze(-1) * chunk + (1 - t.unsqueeze(-1)) * x0
    return ((expert(xt, t, ctx, ctx_mask) - (chunk - x0)) ** 2).mean()


def confidence_loss(expert: FlowExpert, ctx: torch.Tensor, ctx_mask: torch.Tensor | None, chunk: torch.Tensor,
                    target: torch.Tensor, scale: float = 0.1) -> torch.Tensor:
    """Train the rater (AsyncVLA): a token's target confidence is exp(-||a - a*||^2 / scale) for the reference a*."""
    with torch.no_grad():
        want = torch.exp(-((chunk - target) ** 2).sum(-1) / scale)
    return nn.functional.binary_cross_entropy(expert.confidence(chunk, ctx, ctx_mask), want)
