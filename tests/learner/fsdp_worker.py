"""Entry of the two-process FSDP test (torch.multiprocessing.spawn imports it in each child)."""
from __future__ import annotations

import os

import torch


def full_grads(trainer) -> dict[str, torch.Tensor]:
    """Gradients of the last optimizer step, unsharded (a collective)."""
    out = {}
    for name, p in trainer.policy.hf_named_parameters():
        g = p.grad
        out[name] = (g.full_tensor() if hasattr(g, "full_tensor") else g).clone()
    return out


def train_on_fixed_batch(rank: int, world: int, store: str, cfg_json: str, batch_path: str, out_dir: str, updates: int) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    import torch.distributed as dist

    from atlasrl.learner.config import LearnerConfig
    from atlasrl.learner.trainer import Trainer

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        trainer = Trainer(LearnerConfig.model_validate_json(cfg_json), rank=rank, world=world)
        batch = torch.load(batch_path, weights_only=False)
        losses = []
        for step in range(updates):
            losses.append(trainer.update(batch)["loss"])
            if step == 0:
                grads = full_grads(trainer)
                if rank == 0:
                    torch.save(grads, os.path.join(out_dir, "first_grads.pt"))
        if rank == 0:
            torch.save({"losses": losses, "version": trainer.version}, os.path.join(out_dir, "result.pt"))
    finally:
        dist.destroy_process_group()


def train_under_device_check(rank: int, world: int, store: str, cfg_json: str, batch_path: str, out_dir: str, updates: int) -> None:
    """Updates and a weight gather with the trainer on a device of its own (``cpu:0``, see device_check.py);
    writes what each rank's collectives received off that device, and any model/optimizer tensor elsewhere."""
    import json

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    import torch.distributed as dist

    from atlasrl.learner.config import LearnerConfig
    from atlasrl.learner.trainer import Trainer

    from .device_check import DeviceDiscipline

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    device = torch.device("cpu", 0)     # what cuda:LOCAL_RANK is under NCCL
    try:
        batch = torch.load(batch_path, weights_only=False)
        with DeviceDiscipline(device) as check:
            trainer = Trainer(LearnerConfig.model_validate_json(cfg_json), rank=rank, world=world, device=device)
            losses = [trainer.update(batch)["loss"] for _ in range(updates)]
            names = [name for name, _ in trainer.full_tensors(torch.bfloat16)]
        report = {"violations": check.violations, "checked": check.checked, "losses": losses, "tensors": len(names),
                  "misplaced": trainer.misplaced()}
        with open(os.path.join(out_dir, f"device-{rank}.json"), "w") as f:
            json.dump(report, f)
    finally:
        dist.destroy_process_group()
