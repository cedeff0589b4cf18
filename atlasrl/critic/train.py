"""`atlasrl critic train`: fit the value critic's two heads on recorded episodes' env success labels.

    report = train_value_critic(CriticTrainConfig(data=["fl.critic"], out="critic.pt"))
    report["holdout"]["done_f1"], report["holdout"]["progress_mae"]

Labels per frame t of an episode with T steps: done = the env's success flag of that state (the last state of a
successful episode); progress = gamma^(T - t) when the episode succeeded, else 0. Loss: binary cross-entropy
on both heads, the done head weighted by the inverse rate of done frames (successes are rare), the progress of a
failed episode's last frame by ``terminal_weight`` (that value becomes the reward of an episode the env ended). Whole episodes
are held out (never frames of a training episode), and the held-out done precision / recall / F1 at 0.5 and the
progress error are reported.
"""
from __future__ import annotations

import random
import time

import numpy as np
import torch
from torch.nn import functional as F

from atlasrl import codec
from atlasrl.critic.config import CriticTrainConfig
from atlasrl.critic.record import read_episodes
from atlasrl.critic.value_net import ValueCritic, frames_tensor, save, task_features


def _dataset(episodes, gamma: float, side: int):
    frames, tasks, progress, done, won, last = [], [], [], [], [], []
    for ep in episodes:
        T = len(ep.frames) - 1
        for t, f in enumerate(ep.frames):
            frames.append(codec.decode(f.image))
            tasks.append(ep.task)
            progress.append(gamma ** (T - t) if ep.success else 0.0)
            done.append(1.0 if f.oracle.success else 0.0)
            won.append(bool(ep.success))
            last.append(t == T)
    # resized frames kept as uint8 (a quarter of float32's memory); batches are scaled back to [0, 1]
    x = torch.cat([(frames_tensor(frames[i:i + 1024], side) * 255).round().to(torch.uint8)
                   for i in range(0, len(frames), 1024)]) if frames else torch.zeros(0, 3, side, side, dtype=torch.uint8)
    return (x, task_features(tasks), torch.tensor(progress), torch.tensor(done), torch.tensor(won, dtype=torch.bool),
            torch.tensor(last, dtype=torch.bool))


def agreement(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Precision, recall, F1 of boolean predictions against boolean truth (0 where undefined)."""
    tp = float(np.sum(pred & truth))
    fp = float(np.sum(pred & ~truth))
    fn = float(np.sum(~pred & truth))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "positives": tp + fn}


def train_value_critic(cfg: CriticTrainConfig) -> dict:
    t0 = time.perf_counter()
    episodes = [ep for path in cfg.data for ep in read_episodes(path)]
    if not episodes:
        raise ValueError("the recorded episode files hold no episodes")
    rng = random.Random(cfg.seed)
    rng.shuffle(episodes)
    n_hold = int(len(episodes) * cfg.holdout)
    held, train = episodes[:n_hold], episodes[n_hold:]
    x, task, prog, done, won, last = _dataset(train, cfg.gamma, cfg.side)
    torch.manual_seed(cfg.seed)
    net = ValueCritic()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    n = len(x)
    wins, losses = torch.nonzero(won).flatten(), torch.nonzero(~won).flatten()
    # The last frame of a failed episode (a hole, the step cap) is where a value becomes a training reward: every
    # epoch sees all of them, and their progress error weighs terminal_weight times an ordinary frame's.
    failed_ends = torch.nonzero(~won & last).flatten()
    balanced = cfg.balance and len(wins) > 0 and len(losses) > len(wins)
    size = 2 * len(wins) + len(failed_ends) if balanced else n
    prog_weight = torch.where(last & ~won, torch.tensor(cfg.terminal_weight), torch.tensor(1.0))
    pos = float(done[wins].sum() if balanced else done.sum())
    done_weight = torch.tensor((size - pos) / pos if pos else 1.0)
    for _ in range(cfg.epochs):
        if balanced:
            perm = torch.cat([wins, losses[torch.randperm(len(losses))[:len(wins)]], failed_ends])
            perm = perm[torch.randperm(len(perm))]
        else:
            perm = torch.randperm(n)
        for i in range(0, size, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            out = net(x[idx].float() / 255.0, task[idx])
            loss = (F.binary_cross_entropy_with_logits(out[:, 0], prog[idx], weight=prog_weight[idx])
                    + F.binary_cross_entropy_with_logits(out[:, 1], done[idx], pos_weight=done_weight))
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    save(net, cfg.side, cfg.out)
    report = {"episodes": len(episodes), "train_frames": n, "frames_per_epoch": size, "train_successes": sum(e.success for e in train),
              "holdout_episodes": len(held), "seconds": round(time.perf_counter() - t0, 1), "out": cfg.out}
    if held:
        hx, htask, hprog, hdone, hwon, hlast = _dataset(held, cfg.gamma, cfg.side)
        with torch.inference_mode():
            p = torch.sigmoid(net(hx.float() / 255.0, htask)).numpy()
        report["holdout"] = {**{f"done_{k}": v for k, v in agreement(p[:, 1] >= 0.5, hdone.numpy() >= 0.5).items()},
                             "progress_mae": float(np.abs(p[:, 0] - hprog.numpy()).mean()),
                             # the value a failed episode's last frame earns as a reward (0 is right)
                             "failed_end_progress_mean": float(p[(hlast & ~hwon).numpy(), 0].mean()) if bool((hlast & ~hwon).any()) else 0.0}
    return report
