"""Checkpoints with torch.distributed.checkpoint, and export to a Hugging Face directory.

    save(trainer, root, buffer_state)      # collective: every rank writes its shards
    meta = load(trainer, root)             # latest complete checkpoint, or None; returns its meta
    export(root_or_step_dir, out_dir)      # single process: HF model dir the actor engines load (an action-head
                                           # run: its exported policy directory, ActionHeadPolicy.save_exported)

Layout: ``root/step-00000012/`` holds the DCP shards of model + optimizer,
``learner.pt`` (version, step, buffer state: seen ids, waiting episodes,
counters) and, written last by rank 0, ``COMPLETE``. A crash mid-save leaves a
directory without ``COMPLETE``, which ``latest`` ignores. The model directory's
config and tokenizer files are copied into ``root/hf/`` once, so ``export``
needs nothing but the checkpoint.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

MARKER = "COMPLETE"
HF_FILES_EXCLUDE = (".safetensors", ".bin", ".pt", ".pth")


def step_dir(root: Path, version: int) -> Path:
    return Path(root) / f"step-{version:08d}"


def latest(root: str | Path) -> Path | None:
    root = Path(root)
    done = sorted(p for p in root.glob("step-*") if (p / MARKER).exists()) if root.exists() else []
    return done[-1] if done else None


def save(trainer, root: str | Path, buffer_state: dict | None, keep: int = 2) -> Path:
    root = Path(root)
    path = step_dir(root, trainer.version)
    model_sd, optim_sd = get_state_dict(trainer.policy, trainer.optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(path))
    if trainer.rank == 0:
        ah = trainer.cfg.action_head
        if ah is None:   # an action-head policy is rebuilt from its config (in meta), not from HF files
            _copy_hf_files(trainer.cfg.model, root / "hf")
        meta = {"version": trainer.version, "algo": trainer.cfg.algo, "value_head": trainer.policy.value_head is not None,
                "action_head": None if ah is None else ah.model_dump(mode="json")}
        torch.save({"meta": meta, "buffer": buffer_state}, path / "learner.pt")
        (path / "meta.json").write_text(json.dumps(meta))
        (path / MARKER).write_text("ok\n")
        for old in sorted(p for p in root.glob("step-*") if (p / MARKER).exists())[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    if dist.is_initialized():
        dist.barrier()
    return path


def load(trainer, root: str | Path) -> dict | None:
    """Restore model, optimizer and version from the latest complete checkpoint; returns {meta, buffer}."""
    path = latest(root)
    if path is None:
        return None
    model_sd, optim_sd = get_state_dict(trainer.policy, trainer.optimizer)
    state: dict[str, Any] = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(trainer.policy, trainer.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    extra = torch.load(path / "learner.pt", weights_only=False)
    trainer.version = int(extra["meta"]["version"])
    return extra


def _restore_model(policy: torch.nn.Module, path: Path) -> None:
    """The model part of a DCP checkpoint step into an unsharded module, in this one process (export)."""
    state = {"model": policy.state_dict()}
    dcp.load(state, checkpoint_id=str(path), no_dist=True)
    policy.load_state_dict(state["model"])


def _export_action_head(path: Path, meta: dict, out: Path) -> int:
    """An action-head run's checkpoint as the directory its engine loads (ActionHeadPolicy.save_exported)."""
    from atlasrl.policies.action_head.config import ActionHeadConfig
    from atlasrl.policies.action_head.policy import ActionHeadPolicy

    policy = ActionHeadPolicy(ActionHeadConfig(**meta["action_head"]), value_head=meta["value_head"])
    _restore_model(policy, path)
    policy.save_exported(out, int(meta["version"]), checkpoint=str(path))
    return int(meta["version"])


def _copy_hf_files(model_dir: str | Path, dst: Path) -> None:
    if dst.exists():
        return
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in Path(model_dir).iterdir():
        if f.is_file() and not f.name.endswith(HF_FILES_EXCLUDE) and not f.name.endswith(".index.json"):
            shutil.copy2(f, tmp / f.name)
    tmp.rename(dst)


def export(ckpt: str | Path, out: str | Path) -> int:
    """Write the policy of a checkpoint (root or step dir) as an HF model dir; returns its version."""
    from atlasrl.learner.policy import PolicyModel, load_lm_from_config

    ckpt = Path(ckpt)
    path = ckpt if (ckpt / MARKER).exists() else latest(ckpt)
    if path is None:
        raise FileNotFoundError(f"{ckpt}: no complete checkpoint (a step-* directory with {MARKER})")
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("action_head") is not None:
        return _export_action_head(path, meta, Path(out))
    hf = path.parent / "hf"
    policy = PolicyModel(load_lm_from_config(hf), value_head=meta["value_head"])
    _restore_model(policy, path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for f in hf.iterdir():
        shutil.copy2(f, out / f.name)
    policy.lm.save_pretrained(str(out))  # type: ignore[operator]  # torch types nn.Module attributes Tensor | Module
    (out / "atlasrl_version.json").write_text(json.dumps({"version": meta["version"], "checkpoint": str(path)}))
    return int(meta["version"])
