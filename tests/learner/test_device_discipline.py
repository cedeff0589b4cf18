"""Device discipline of the learner, on CPU: what NCCL and CUDA would refuse, caught with gloo.

Under NCCL every tensor entering a collective must be a CUDA tensor on the rank's device; the trainer once
all-reduced CPU tensors (micro-batch counts, token counts, the stats), which gloo takes and NCCL does not.
Two gloo ranks run the trainer with a device of its own (tests/learner/device_check.py): each tensor an
atlasrl module hands to a collective must have been placed on it, and the model, gradients and optimizer
state must live on its device type.
"""
import json
import math
import tempfile

import pytest
import torch
import torch.multiprocessing as mp

from atlasrl.learner.config import LearnerConfig

from .fsdp_worker import train_under_device_check
from .test_fsdp_two_process import on_policy_batch


@pytest.mark.slow
def test_every_collective_input_is_on_the_trainers_device(tiny_model_dir, tmp_path):
    # PPO with a KL reference: value head, GAE, reference forward and every collective of an update.
    cfg = LearnerConfig(model=tiny_model_dir, algo="ppo", kl_coef=0.05, lr=1e-3, batch_episodes=6, minibatches=2,
                        micro_batch_tokens=32)
    torch.save(on_policy_batch(tiny_model_dir), tmp_path / "batch.pt")
    store = tempfile.mktemp(prefix="atlasrl-dev-")
    mp.spawn(train_under_device_check, args=(2, store, cfg.model_dump_json(), str(tmp_path / "batch.pt"),
                                             str(tmp_path), 2), nprocs=2, join=True)
    for rank in range(2):
        report = json.loads((tmp_path / f"device-{rank}.json").read_text())
        assert report["violations"] == [], "\n".join(report["violations"])
        assert report["checked"] >= 5, report          # the check saw the trainer's collectives
        assert report["misplaced"] == [], report["misplaced"]
        assert report["tensors"] > 0 and all(math.isfinite(v) for v in report["losses"]), report
