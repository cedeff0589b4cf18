# The two commands a newcomer needs (see README):
#   make up     install and run the whole loop on this machine (`atlasrl up`)
#   make test   install everything the tests need and run them
# CI (.ci/run) runs `make test-deps lint`, then `make test`: install, lint, then the tests.
.PHONY: up test test-deps install lint protos bench gpu-check

up:
	scripts/install.sh
	.venv/bin/atlasrl up

test: test-deps
	scripts/test.sh

test-deps:
	scripts/install.sh --dev --maniskill --miniworld --vllm

install:
	scripts/install.sh --dev

# ruff and mypy (configured in pyproject.toml) from .venv; the dev extra brings them.
lint: .venv/bin/ruff
	.venv/bin/ruff check .
	.venv/bin/mypy

.venv/bin/ruff:
	scripts/install.sh --dev

protos:
	.venv/bin/python scripts/gen_protos.py

# On a host with a CUDA GPU: install the GPU extras, train under NCCL, engine/learner log-probs in bf16 with a
# weight sync (transformers and vLLM), ManiSkill GPU physics; figures in bench/results/gpu-check-<date>.json.
gpu-check:
	scripts/gpu-check.sh
