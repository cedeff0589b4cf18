"""Generated protobuf/gRPC stubs for proto/atlasrl/v1 (do not edit; run scripts/gen_protos.py)."""
