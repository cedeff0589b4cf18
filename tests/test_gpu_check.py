"""scripts/gpu-check.sh and its Python stages (atlasrl/gpucheck.py) on a host without a GPU.

The script cannot run here: it must say so and change nothing. Its stages are the code a CUDA run uses, so
they run here on the CPU backend: the learner on 2 gloo ranks for 2 updates (the device checks included), the
engine/learner log-prob agreement with a weight sync, ManiSkill frames, and the merged JSON report.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from atlasrl import gpucheck

ROOT = Path(__file__).resolve().parents[1]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on a host without CUDA")


@no_cuda
def test_the_script_says_there_is_no_gpu_and_changes_nothing(tmp_path):
    before = sorted(p.name for p in ROOT.iterdir())
    env = {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}    # no nvidia-smi here, or one without GPUs
    (tmp_path / "nvidia-smi").write_text("#!/bin/sh\necho 'No devices were found'\nexit 6\n")
    (tmp_path / "nvidia-smi").chmod(0o755)
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh")], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no CUDA GPU on this host" in r.stderr and "nothing was installed or run" in r.stderr
    assert sorted(p.name for p in ROOT.iterdir()) == before


@no_cuda
def test_the_python_check_refuses_the_cpu_unless_told(tmp_path):
    r = subprocess.run([sys.executable, "-m", "atlasrl.gpucheck", "--stages", "learner", "--out", str(tmp_path / "r.json")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no CUDA GPU visible to torch" in r.stderr, r.stderr
    assert not (tmp_path / "r.json").exists()


def test_unknown_stage_is_refused(capsys):
    with pytest.raises(SystemExit):
        gpucheck.main(["--allow-cpu", "--stages", "learner,warp"])
    assert "unknown stage(s) warp" in capsys.readouterr().err


@pytest.mark.slow
def test_the_learner_stage_trains_on_two_gloo_ranks_with_everything_on_the_device():
    r = gpucheck.run_stage("learner", nproc=2, updates=2)
    assert r["ok"], r.get("traceback") or r["problems"]
    assert (r["backend"], r["world"], r["updates"]) == ("gloo" if not torch.cuda.is_available() else "nccl", 2, 2)
    assert r["misplaced"] == [] and r["loss_first"] == r["loss_first"] and r["seconds_per_update_mean"] > 0


def test_the_logprob_stage_agrees_before_and_after_a_weight_sync():
    r = gpucheck.run_stage("logprobs", engine="transformers")
    assert r["ok"], r.get("traceback") or r["problems"]
    assert r["engine_version_after_sync"] == 1 and r["tokens_compared"] > 0
    if r["dtype"] == "float32":
        assert max(r["max_abs_diff_before_sync"], r["max_abs_diff_after_sync"]) < 2e-4


def test_a_failing_stage_is_reported_not_raised(tmp_path, monkeypatch):
    def broken(**_):
        raise RuntimeError("NCCL error: unhandled cuda error")

    monkeypatch.setitem(gpucheck.RUNNERS, "learner", broken)
    r = gpucheck.run_stage("learner")
    assert not r["ok"] and "NCCL error" in r["problems"][0] and "Traceback" in r["traceback"]
    out = tmp_path / "gpu-check.json"
    gpucheck.merge_report(out, "maniskill", {"ok": True, "frames": 3}, {"gpus": 0})
    report = gpucheck.merge_report(out, "learner", r, {"gpus": 0})
    assert json.loads(out.read_text()) == report
    assert set(report["stages"]) == {"maniskill", "learner"} and report["ok"] is False


def test_the_maniskill_stage_renders_frames():
    from atlasrl.envserver.maniskill.probe import vulkan_problem

    if vulkan_problem():
        pytest.skip(vulkan_problem())
    r = gpucheck.run_stage("maniskill", steps=3)
    assert r["ok"], r.get("traceback") or r["problems"]
    assert r["frames"] == 3 * r["envs"] and r["frame_shape"][-3:] == [128, 128, 3]


@pytest.mark.vllm
def test_the_logprob_stage_with_vllm_agrees_before_and_after_a_weight_sync():
    pytest.importorskip("vllm")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    r = gpucheck.run_stage("logprobs", engine="vllm")
    assert r["ok"], r.get("traceback") or r["problems"]
    assert r["engine"] == "vllm" and r["engine_version_after_sync"] == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_every_stage_passes_on_this_gpu(tmp_path):
    """Only where CUDA is: what scripts/gpu-check.sh runs in .venv, 2 updates instead of 20."""
    assert gpucheck.main(["--updates", "2", "--steps", "5", "--out", str(tmp_path / "r.json")]) == 0, \
        (tmp_path / "r.json").read_text()
