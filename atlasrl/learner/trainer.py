"""FSDP2 training of the policy on a batch of episodes (every rank runs this).

    trainer = Trainer(cfg, rank=dist.get_rank(), world=dist.get_world_size())
    stats = trainer.update(batch)                   # same TrainBatch on every rank
    for name, full in trainer.full_tensors(torch.bfloat16):   # all ranks, same order
        ...                                          # rank 0 gets tensors, others None

Sharding: ``fully_shard`` on every block the model lists in ``_no_split_modules``
(decoder layers, vision blocks), then on the root PolicyModel; bf16 parameters
with fp32 reductions on GPU (FSDP2's ``MixedPrecisionPolicy``).

Devices: model, gradients and optimizer state live on ``device``, the backend's
device (``backend_device``: ``cuda:LOCAL_RANK`` under NCCL, the CPU under gloo);
micro-batches are collated on the CPU and moved there for each pass, and every
tensor the trainer hands to a collective is moved there first (``_all_reduce``):
NCCL takes CUDA tensors only. tests/learner/test_device_discipline.py checks it
on CPU with a stand-in device. An update: episodes are split across ranks whole,
packed into micro-batches by token budget, and every rank runs the same number
of forward/backward passes (missing ones are zero-weight copies) because each
pass is a collective. Losses are token sums divided by the global token count,
times the world size, since FSDP averages gradients over ranks.
"""
from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from atlasrl.learner import losses
from atlasrl.learner.batching import (
    Seq,
    bootstrap_seq,
    collate,
    dummy_seq,
    episode_seqs,
    pack_micro_batches,
    shard_episodes,
)
from atlasrl.learner.config import STEP_RETURN_ALGOS, LearnerConfig
from atlasrl.learner.policy import PolicyModel, load_lm
from atlasrl.models.load import load_policy
from atlasrl.v1 import trajectory_pb2

STAT_KEYS = ("loss", "policy_loss", "kl", "entropy", "clipfrac", "approx_kl", "behav_weight_mean", "value_loss", "loss_tokens", "turns", "tokens")


@dataclass
class TrainBatch:
    """What rank 0 broadcasts: serialized episodes with their staleness weights."""

    episodes: list[bytes]
    weights: list[float]
    lags: list[int]


def episode_return(ep: trajectory_pb2.Episode, algo: str) -> float:
    """The return GRPO's episode advantage compares.

    GiGPO leaves the memory's shaping out of it: shaping is discounted with ``step_gamma`` (atlasrl up
    gives the memory that discount) and telescopes in the step returns-to-go, where GiGPO uses it; in
    an undiscounted episode sum the same terms add (gamma - 1) * Phi(s_t) per turn, which pays for
    lingering on low-potential (dangerous) cells (with-memory training collapsed that way). GRPO and
    PPO keep it: for them the shaping is undiscounted (memory gamma 1) and telescopes in this sum.
    """
    if algo in STEP_RETURN_ALGOS:
        return sum(t.reward - t.shaping_reward for t in ep.turns)
    return sum(t.reward for t in ep.turns)


def state_key(turn: trajectory_pb2.TurnRecord) -> bytes:
    """The env state a turn acted on: the actor's digest, else the prompt itself (history and images included)."""
    if turn.state_key:
        return turn.state_key
    return hashlib.blake2b(b"".join(i.to_bytes(4, "little", signed=True) for i in turn.prompt_ids), digest_size=16).digest()


def _token_size(ep: trajectory_pb2.Episode) -> int:
    """Work of an episode for sharding across ranks: its tokens."""
    return sum(len(t.prompt_ids) + len(t.response_ids) for t in ep.turns)


def backend_device(local_rank: int = 0) -> tuple[str, torch.device]:
    """The process group backend and this rank's device: NCCL on ``cuda:local_rank`` where CUDA is there, gloo on
    the CPU otherwise. A rank without a GPU of its own is refused (more ranks than visible GPUs)."""
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        if local_rank >= n:
            raise RuntimeError(f"learner.nproc: local rank {local_rank} has no GPU of its own: {n} visible "
                               "(CUDA_VISIBLE_DEVICES, learner.devices); run one rank per GPU")
        return "nccl", torch.device("cuda", local_rank)
    return "gloo", torch.device("cpu")


def vision_parameters(lm) -> list[torch.nn.Parameter]:
    """A VL model's vision tower with its merger (Qwen2.5-VL: ``model.visual``); [] for a text-only model."""
    visual = getattr(getattr(lm, "model", lm), "visual", None)
    return list(visual.parameters()) if visual is not None else []


class Trainer:
    def __init__(self, cfg: LearnerConfig, rank: int = 0, world: int = 1, device: torch.device | None = None):
        self.cfg, self.rank, self.world = cfg, rank, world
        self.device = device or torch.device("cpu")
        torch.manual_seed(cfg.seed)
        self._seqs_of, self._size_of = episode_seqs, _token_size
        if cfg.action_head is not None:   # a continuous action-head policy (atlasrl/policies/action_head)
            self._init_action_head(cfg.action_head)
            return
        lm = load_lm(cfg.model)
        self.info = load_policy(cfg.model, with_model=False)   # pad id, image processor, VL flags
        self.info.model = lm
        self.vocab_size = lm.config.get_text_config().vocab_size
        self.policy = PolicyModel(lm, value_head=cfg.algo == "ppo").to(self.device)
        if cfg.freeze_vision:   # before sharding: FSDP2 keeps requires_grad per parameter
            for p in vision_parameters(lm):
                p.requires_grad_(False)
        self.ref = self._frozen_copy(lm) if cfg.kl_coef > 0 else None
        if cfg.activation_checkpointing:
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        bf16 = cfg.bf16 if cfg.bf16 is not None else self.device.type == "cuda"
        self.mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
        self._shard(self.policy)
        if self.ref is not None:
            self._shard(self.ref)
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.version = 0   # grows by one per optimizer update

    def _init_action_head(self, ah) -> None:
        """Backbone + flow expert instead of an LM: its turns become FlowSeqs, one loss "token" per denoising step."""
        from atlasrl.policies.action_head import learning
        from atlasrl.policies.action_head.policy import ActionHeadPolicy

        self.info = None
        self.vocab_size = 0
        self._seqs_of, self._size_of = learning.episode_flow_seqs, learning.flow_size
        self.policy = ActionHeadPolicy(ah, value_head=self.cfg.algo == "ppo", seed=self.cfg.seed).to(self.device)  # type: ignore[assignment]
        self.ref = None
        if self.cfg.kl_coef > 0:
            self.ref = copy.deepcopy(self.policy).eval().requires_grad_(False)
        bf16 = self.cfg.bf16 if self.cfg.bf16 is not None else self.device.type == "cuda"
        self.mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
        self._shard(self.policy)
        if self.ref is not None:
            self._shard(self.ref)
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.version = 0

    def _frozen_copy(self, lm) -> PolicyModel:
        ref = PolicyModel(copy.deepcopy(lm)).to(self.device).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        return ref

    def _shard(self, policy: PolicyModel) -> None:
        if self.cfg.action_head is not None:   # FSDP2 over backbone blocks and expert layers, then the root
            for unit in policy.shard_units():  # type: ignore[operator]
                fully_shard(unit, mp_policy=self.mp)
            fully_shard(policy, mp_policy=self.mp)
            return
        blocks = set(getattr(policy.lm, "_no_split_modules", None) or [])
        for module in policy.lm.modules():
            if type(module).__name__ in blocks:
                fully_shard(module, mp_policy=self.mp)
        fully_shard(policy, mp_policy=self.mp)

    # ---- one update ----------------------------------------------------
    def update(self, batch: TrainBatch) -> dict[str, float]:
        t0 = time.perf_counter()
        cfg = self.cfg
        episodes = [trajectory_pb2.Episode.FromString(b) for b in batch.episodes]
        returns = torch.tensor([sum(t.reward for t in ep.turns) for ep in episodes], dtype=torch.float64)
        mine = shard_episodes([self._size_of(ep) for ep in episodes], self.world, self.rank)
        seqs = {i: self._seqs_of(episodes[i], i, batch.weights[i]) for i in mine}
        if cfg.algo in ("grpo", "gigpo"):
            self._group_advantages(episodes, mine, seqs)
        minibatches = self._plan(mine, seqs)
        self._prepass(minibatches)
        if cfg.algo == "ppo":
            self._gae(episodes, seqs, self._bootstrap_values(episodes, mine))
        for mbs in minibatches:
            for mb, _ in mbs:
                adv = torch.tensor([s.advantage for s in mb["seqs"]], dtype=torch.float32)
                mb["advantage"] = adv.unsqueeze(1).expand_as(mb["behav_logp"]).clone()
                mb["returns"] = torch.tensor([s.ret for s in mb["seqs"]], dtype=torch.float32)
        sums = torch.zeros(len(STAT_KEYS), dtype=torch.float64)
        grad_norms: list[float] = []
        for _ in range(cfg.ppo_epochs):
            for mbs in minibatches:
                sums += self._optimizer_step(mbs, grad_norms)
        if cfg.sim_update_s:   # benches on CPU hosts: the accelerator's share of an update (config doc)
            time.sleep(cfg.sim_update_s)
        self.version += 1
        sums = self._all_reduce(sums)
        return self._summarise(sums, grad_norms, returns, time.perf_counter() - t0)

    def _group_advantages(self, episodes, mine: list[int], seqs: dict[int, list[Seq]]) -> None:
        """GRPO episode advantages on every turn; GiGPO adds the step advantage of each turn's state group."""
        cfg = self.cfg
        keys = {g: k for k, g in enumerate(dict.fromkeys(ep.group_id for ep in episodes))}
        group_index = [keys[ep.group_id] for ep in episodes]
        returns = torch.tensor([episode_return(ep, cfg.algo) for ep in episodes], dtype=torch.float64)
        adv = losses.grpo_advantages(returns, torch.tensor(group_index), cfg.grpo_std_normalize)
        step = None
        if cfg.algo == "gigpo":
            step = losses.step_group_advantages(
                [[t.reward for t in ep.turns] for ep in episodes],
                [[state_key(t) for t in ep.turns] for ep in episodes],
                group_index, cfg.step_gamma, cfg.grpo_std_normalize)
        for i in mine:
            for t, s in enumerate(seqs[i]):
                s.advantage = float(adv[i]) + (cfg.step_adv_weight * step[i][t] if step is not None else 0.0)

    def _plan(self, mine: list[int], seqs: dict[int, list[Seq]]) -> list[list[tuple[dict, bool]]]:
        """Per minibatch, the micro-batches of this rank, padded to the same count on every rank."""
        cfg = self.cfg
        groups = [[s for k, i in enumerate(mine) if k % cfg.minibatches == m for s in seqs[i]] for m in range(cfg.minibatches)]
        packed = [self._pack(g) for g in groups]
        counts = self._all_reduce(torch.tensor([len(p) for p in packed], dtype=torch.long), dist.ReduceOp.MAX)
        plan = []
        for p, n in zip(packed, counts.tolist()):
            real = [(self._collate(m), True) for m in p]
            filler = real[0][0] if real else self._collate([self._dummy()])
            plan.append(real + [(filler, False)] * (n - len(real)))
        return plan

    def _all_reduce(self, values: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
        """``values`` reduced over the ranks, back on the CPU. The collective runs on the backend's device (NCCL
        refuses CPU tensors): the trainer's bookkeeping stays on the CPU and crosses over only here."""
        on_device = values.to(self.device)
        dist.all_reduce(on_device, op=op)
        return on_device.cpu()

    def misplaced(self) -> list[str]:
        """Parameters, gradients and optimizer state not on the trainer's device type (empty when all is well)."""
        def local(t: torch.Tensor) -> torch.Tensor:
            return t.to_local() if isinstance(t, DTensor) else t

        out = []
        models = [("policy", self.policy)] + ([("ref", self.ref)] if self.ref is not None else [])
        for label, model in models:
            for name, p in model.named_parameters():
                if local(p).device.type != self.device.type:
                    out.append(f"{label} parameter {name} on {local(p).device}")
                if p.grad is not None and local(p.grad).device.type != self.device.type:
                    out.append(f"{label} gradient {name} on {local(p.grad).device}")
        for i, state in enumerate(self.optimizer.state.values()):
            for key, t in state.items():
                # AdamW keeps its step counter on the CPU unless capturable/fused: a scalar, not state to move
                if isinstance(t, torch.Tensor) and key != "step" and local(t).device.type != self.device.type:
                    out.append(f"optimizer state {i}.{key} on {local(t).device}")
        return out

    def _collate(self, seqs: list[Seq]) -> dict:
        if self.cfg.action_head is not None:
            from atlasrl.policies.action_head.learning import collate_flow

            return collate_flow(seqs)  # type: ignore[arg-type]
        return collate(seqs, self.info, share=self.cfg.share_rows)

    def _pack(self, seqs: list[Seq]) -> list[list[Seq]]:
        if self.cfg.action_head is not None:
            from atlasrl.policies.action_head.learning import pack_flow

            return pack_flow(seqs, self.cfg.action_head.micro_batch)  # type: ignore[arg-type]
        return pack_micro_batches(seqs, self.cfg.micro_batch_tokens, share=self.cfg.share_rows)

    def _dummy(self) -> Seq:
        if self.cfg.action_head is not None:
            from atlasrl.policies.action_head.learning import dummy_flow_seq

            return dummy_flow_seq(self.cfg.action_head)  # type: ignore[return-value]
        return dummy_seq()

    def _forward(self, model: PolicyModel, mb: dict, want_values: bool = False):
        tf = mb["tf"].to(self.device)
        if self.cfg.action_head is not None:   # scored under this version's SDE noise (ActionHeadConfig.sigma_at)
            tf = tf.at_version(self.version)
        return model(tf, mb["temperature"], want_values=want_values)

    @torch.no_grad()
    def _prepass(self, minibatches) -> None:
        """Proximal log-probs, old values and reference log-probs, with the weights before this update."""
        cfg = self.cfg
        need_policy = cfg.recompute_proximal or cfg.algo == "ppo"
        for mbs in minibatches:
            for mb, _ in mbs:
                if need_policy:
                    logp, _, values = self._forward(self.policy, mb, want_values=cfg.algo == "ppo")
                    mb["prox_logp"] = logp.cpu() if cfg.recompute_proximal else mb["behav_logp"]
                    if values is not None:
                        for s, v in zip(mb["seqs"], values.cpu().tolist()):
                            s.old_value = v
                        mb["old_values"] = values.cpu()
                else:
                    mb["prox_logp"] = mb["behav_logp"]
                if self.ref is not None:
                    mb["ref_logp"] = self._forward(self.ref, mb)[0].cpu()

    @torch.no_grad()
    def _bootstrap_values(self, episodes, mine: list[int]) -> dict[int, float]:
        """V(s_T) of this rank's cut episodes (those carrying Episode.bootstrap), with the weights before the update.

        Every rank runs the same number of forwards (FSDP's collectives), padding with a dummy row."""
        boot = [s for i in mine if (s := bootstrap_seq(episodes[i], i)) is not None]
        packed = pack_micro_batches(boot, self.cfg.micro_batch_tokens, share=False) if boot else []
        n = int(self._all_reduce(torch.tensor([len(packed)], dtype=torch.long), dist.ReduceOp.MAX)[0])
        out: dict[int, float] = {}
        for k in range(n):
            group = packed[k] if k < len(packed) else [dummy_seq()]
            _, _, values = self._forward(self.policy, self._collate(group), want_values=True)
            if k < len(packed):
                out.update({s.episode: float(v) for s, v in zip(group, values.cpu().tolist())})
        return out

    def _gae(self, episodes, seqs: dict[int, list[Seq]], bootstrap: dict[int, float] | None = None) -> None:
        """PPO's per-turn advantages and returns; ``bootstrap``: V(s_T) of cut episodes by index (others end at 0)."""
        cfg = self.cfg
        for i, turns in seqs.items():
            rewards = torch.tensor([[t.reward for t in episodes[i].turns]], dtype=torch.float64)
            values = torch.tensor([[s.old_value for s in turns]], dtype=torch.float64)
            tail = torch.tensor([(bootstrap or {}).get(i, 0.0)], dtype=torch.float64)
            adv, ret = losses.gae_over_turns(rewards, values, torch.ones_like(rewards), cfg.gamma, cfg.gae_lambda, tail)
            for s, a, r in zip(turns, adv[0].tolist(), ret[0].tolist()):
                s.advantage, s.ret = a, r

    def _optimizer_step(self, mbs: list[tuple[dict, bool]], grad_norms: list[float]) -> torch.Tensor:
        cfg = self.cfg
        counts = self._all_reduce(torch.tensor([
            sum(float((mb["loss_mask"] * (mb["episode_weight"] > 0)).sum()) for mb, real in mbs if real),
            sum(len(mb["seqs"]) for mb, real in mbs if real),
        ], dtype=torch.float64))
        tok_norm = self.world / max(counts[0].item(), 1.0)
        seq_norm = self.world / max(counts[1].item(), 1.0)
        sums = torch.zeros(len(STAT_KEYS), dtype=torch.float64)
        self.optimizer.zero_grad(set_to_none=True)
        for mb, real in mbs:
            logp, entropy, values = self._forward(self.policy, mb, want_values=cfg.algo == "ppo")
            dev = lambda k: mb[k].to(self.device)  # noqa: E731, B023 - a shorthand, used within this iteration only
            weight = dev("loss_mask") * dev("episode_weight") * (1.0 if real else 0.0)
            pg, diag = losses.policy_loss_sum(logp, dev("prox_logp"), dev("behav_logp"), dev("advantage"), weight,
                                              cfg.clip_eps, cfg.upper_clip, cfg.behav_imp_weight_cap)
            ent = (entropy * weight).sum()
            loss = pg - cfg.entropy_coef_at(self.version) * ent
            kl = torch.zeros((), device=self.device)
            if self.ref is not None:
                kl = losses.kl_k3_sum(logp, dev("ref_logp"), weight)
                loss = loss + cfg.kl_coef * kl
            loss = loss * tok_norm
            vloss = torch.zeros((), device=self.device)
            if values is not None:
                vw = torch.full_like(values, 1.0 if real else 0.0)
                vloss = losses.value_loss_sum(values, dev("old_values"), dev("returns"), vw, cfg.value_clip)
                loss = loss + cfg.value_coef * vloss * seq_norm
            loss.backward()
            if real:
                live = float((weight > 0).sum())
                vals = [loss.item() / self.world, pg.item() * tok_norm / self.world, kl.item(), ent.item(),
                        diag["clipfrac"].item(), diag["approx_kl"].item(), diag["behav_weight_mean"].item(),
                        vloss.item(), live, len(mb["seqs"]), float(sum(len(s) for s in mb["seqs"]))]
                sums += torch.tensor(vals, dtype=torch.float64)
        norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
        grad_norms.append(float(norm.full_tensor() if isinstance(norm, DTensor) else norm))
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr_at(self.version)
        self.optimizer.step()
        return sums

    def _summarise(self, sums: torch.Tensor, grad_norms: list[float], returns: torch.Tensor, seconds: float) -> dict[str, float]:
        s = dict(zip(STAT_KEYS, sums.tolist()))
        steps = self.cfg.ppo_epochs * self.cfg.minibatches
        tok = max(s["loss_tokens"], 1.0)
        return {
            "loss": s["loss"] / steps,
            "policy_loss": s["policy_loss"] / steps,
            "value_loss": s["value_loss"] / max(s["turns"], 1.0),
            "kl": s["kl"] / tok,
            "entropy": s["entropy"] / tok,
            "clipfrac": s["clipfrac"] / tok,
            "approx_kl": s["approx_kl"] / tok,
            "behav_weight_mean": s["behav_weight_mean"] / tok,
            "grad_norm": sum(grad_norms) / len(grad_norms),
            "tokens": s["tokens"] / self.cfg.ppo_epochs,
            "tokens_per_second": s["tokens"] / seconds,
            "reward_mean": float(returns.mean()) if returns.numel() else 0.0,
            "entropy_coef": self.cfg.entropy_coef_at(self.version - 1),
            "lr": self.cfg.lr_at(self.version - 1),
            "seconds": seconds,
        }

    # ---- weights out ---------------------------------------------------
    def full_tensors(self, dtype: torch.dtype):
        """(HF name, full CPU tensor in ``dtype``) on rank 0, (name, None) elsewhere. A collective."""
        for name, p in self.policy.hf_named_parameters():
            if isinstance(p, DTensor):
                # One rank holds everything: skip the collective (~1.5 ms per tensor on gloo).
                full = p.to_local().detach() if self.world == 1 else p.full_tensor()
            else:
                full = p.detach()
            yield name, (full.to(dtype=dtype, device="cpu").contiguous() if self.rank == 0 else None)
