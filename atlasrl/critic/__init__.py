"""The critic role: a VLAC-style progress critic served over gRPC (critic.proto)."""
