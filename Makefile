# The two commands a newcomer needs (see README):
#   make up     install and run the whole loop on this machine (`atlasrl up`)
#   make test   install everything the tests need and run them
.PHONY: up test install protos bench

up:
	scripts/install.sh
	.venv/bin/atlasrl up

test:
	scripts/install.sh --dev --maniskill --vllm
	scripts/test.sh

install:
	scripts/install.sh --dev

protos:
	.venv/bin/python scripts/gen_protos.py
