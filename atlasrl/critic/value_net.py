"""The small value critic: a CNN over the frame plus a hashed bag of task words, with two heads.

    net, side = load_or_init("critic.pt")                 # or load_or_init(None, seed=0): seeded random weights
    progress, done = predict(net, frames, tasks, side)    # numpy float32 arrays in [0, 1]

Heads: ``progress`` (sigmoid, trained on gamma^(T-t) of successful episodes, 0 on failed ones) and ``done``
(sigmoid, trained on the env's success flag of each frame). ~60k parameters: it batches hundreds of frames
per call on a CPU. The checkpoint is a torch file {"state", "side", "task_dim", "format"}.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

FORMAT = 1
TASK_DIM = 32
DEFAULT_SIDE = 64


class ValueCritic(nn.Module):
    def __init__(self, task_dim: int = TASK_DIM):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.task = nn.Linear(task_dim, 32)
        self.trunk = nn.Sequential(nn.Linear(32 * 16 + 32, 64), nn.ReLU())
        self.heads = nn.Linear(64, 2)    # [progress logit, done logit]

    def forward(self, x: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.conv(x).flatten(1), F.relu(self.task(task))], dim=1)
        return self.heads(self.trunk(h))


def task_features(tasks: Sequence[str], dim: int = TASK_DIM) -> torch.Tensor:
    """Hashed bag of lower-case words (crc32, stable across processes), L2-normalised."""
    out = torch.zeros(len(tasks), dim)
    for i, t in enumerate(tasks):
        for w in t.lower().split():
            out[i, zlib.crc32(w.encode()) % dim] += 1.0
    return F.normalize(out, dim=1)


def frames_tensor(frames: Sequence[np.ndarray], side: int, device: str = "cpu") -> torch.Tensor:
    """uint8 (H, W, 3) frames of any sizes -> float (N, 3, side, side) in [0, 1] (area resize)."""
    out = []
    for f in frames:
        arr = np.ascontiguousarray(f) if f.flags.writeable else np.array(f)   # decoded frames are read-only
        t = torch.from_numpy(arr).to(device).permute(2, 0, 1).unsqueeze(0).float() / 255.0
        if t.shape[-2:] != (side, side):
            t = F.interpolate(t, size=(side, side), mode="area")
        out.append(t)
    return torch.cat(out) if out else torch.zeros(0, 3, side, side, device=device)


def load_or_init(path: str | None, *, seed: int = 0, device: str = "cpu") -> tuple[ValueCritic, int]:
    if path is None:
        torch.manual_seed(seed)
        net, side = ValueCritic(), DEFAULT_SIDE
    else:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        if ck.get("format") != FORMAT:
            raise ValueError(f"{path}: not a value critic checkpoint (format {ck.get('format')!r}, want {FORMAT})")
        net, side = ValueCritic(int(ck["task_dim"])), int(ck["side"])
        net.load_state_dict(ck["state"])
    return net.to(device).eval(), side


def save(net: ValueCritic, side: int, path: str) -> None:
    torch.save({"format": FORMAT, "state": net.state_dict(), "side": side, "task_dim": net.task.in_features}, path)


@torch.inference_mode()
def predict(net: ValueCritic, frames: Sequence[np.ndarray], tasks: Sequence[str], side: int,
            device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    logits = net(frames_tensor(frames, side, device), task_features(tasks, net.task.in_features).to(device))
    p = torch.sigmoid(logits.float()).cpu().numpy()
    return p[:, 0], p[:, 1]
