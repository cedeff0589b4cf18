#!/usr/bin/env bash
# Run the whole test suite (after scripts/install.sh --dev [--maniskill] [--vllm]).
# The vLLM engine tests run in .venv-vllm when it exists (CI always builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
status=0
if [ -x .venv-vllm/bin/python ]; then
  echo "==> vllm engine tests (.venv-vllm)"
  .venv-vllm/bin/python -m pytest -q -m vllm tests "$@" || status=$?
  [ "$status" = 5 ] && status=0   # no vllm tests collected yet
fi
echo "==> test suite (.venv)"
.venv/bin/python -m pytest -q -m "not vllm and not gpu" tests "$@" || status=$?
exit $status
