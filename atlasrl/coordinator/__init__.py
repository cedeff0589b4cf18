"""Coordinator role: membership with leases, env-server assignment, run state, global counters (SQLite-backed)."""
