"""Held-out evaluation for `atlasrl up`: runs `atlasrl actor eval` as a child process and reads its JSON report."""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from atlasrl.config import RunConfig
from atlasrl.lifeline import lifeline_argv
from atlasrl.up.plan import atlasrl_cmd, engine_python, eval_file
from atlasrl.up.rundir import RunDir


def latest_model_dir(root: Path) -> Path | None:
    """Newest complete model directory under ``root``: an HF one (config.json and weights) or an exported
    action-head policy (action_head.json and its weights)."""
    found = [p.parent for p in root.rglob("config.json")
             if any(p.parent.glob("*.safetensors")) or (p.parent / "pytorch_model.bin").exists()]
    found += [p.parent for p in root.rglob("action_head.json") if (p.parent / "action_head.safetensors").exists()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


async def export_checkpoint(checkpoints: Path, out: Path, log_path: Path, timeout_s: float = 300.0) -> Path | None:
    """`atlasrl learner export`: the latest DCP checkpoint step as an HF model directory (None if there is none)."""
    if not any(checkpoints.glob("step-*")):
        return None
    argv = atlasrl_cmd("learner", "export", "--ckpt", str(checkpoints), "--out", str(out))
    with open(log_path, "ab") as logf:
        # lifeline: dies with `atlasrl up` even if that is SIGKILLed
        proc = await asyncio.create_subprocess_exec(*lifeline_argv(os.getpid(), argv), stdout=logf, stderr=logf,
                                                    stdin=asyncio.subprocess.DEVNULL)
        try:
            code = await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return None
    return latest_model_dir(out) if code == 0 else None


async def run_eval(cfg: RunConfig, rd: RunDir, label: str, model_dir: str | Path, envs: list[str], log_path: Path,
                   timeout_s: float = 600.0, role_flags: list[str] | None = None) -> dict | None:
    """Episodes on seeds [eval_seed_start, +eval_episodes) at run.eval_temperature; the report dict or None on failure.

    The eval reads ``<run_dir>/config/eval-<label>.yaml`` (the actor section: training's prompts) and writes one
    JSON line per episode to ``<run_dir>/eval/<label>.jsonl``. ``role_flags``: the shared role flags (run.secure:
    the actor's TLS and token settings)."""
    path = eval_file(cfg, rd, label, model_dir, envs, rd.eval / f"{label}.jsonl")
    argv = atlasrl_cmd("actor", "eval", "--config", str(path), *(role_flags or []), python=engine_python(cfg.actor.engine))
    with open(log_path, "ab") as logf:
        proc = await asyncio.create_subprocess_exec(*lifeline_argv(os.getpid(), argv), stdout=asyncio.subprocess.PIPE, stderr=logf,
                                                    stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
        try:
            stdout, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
        except (TimeoutError, asyncio.CancelledError) as e:
            proc.kill()  # timed out, or `atlasrl up` was interrupted
            await proc.wait()
            if isinstance(e, asyncio.CancelledError):
                raise
            return None
        logf.write(stdout)
    if proc.returncode != 0:
        return None
    for text in reversed(stdout.decode(errors="replace").splitlines()):
        if text.startswith("{"):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                continue
    return None
