"""Runs ON a host (sent over ssh to its Python on stdin): wait until the given role processes serve gRPC health.

    python - '<json: [{"name", "health", "log", "offset", "mode", "pidfile", "unit"}]>' TIMEOUT_S PKI_DIR|"" < probe.py

Prints one JSON line per process: ``{"name", "state", "seconds", "log"}`` with state SERVING, NOT_SERVING,
UNAVAILABLE (not answering by the deadline), EXITED (its supervisor restarted it since ``offset``, the log's
size before the start, or is gone: the log tail says why; offset -1: only whether it is gone) or RUNNING (no health endpoint: a learner node other than rank 0; its process is up).
The probe dials the address the others use (the role's bind address), over mTLS with the host's own
certificate when PKI_DIR holds one, so it checks the exact path a peer takes. Health needs no token.
Exits 0 only if every process is SERVING or RUNNING. Standard library + grpcio only (the host's venv).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def alive(t: dict) -> bool:
    if t.get("mode") == "systemd":
        return subprocess.run(["systemctl", "is-active", "--quiet", t["unit"]]).returncode == 0
    try:
        with open(t["pidfile"]) as f:
            os.kill(int(f.read().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def since(t: dict) -> str:
    """The log written since this start (``offset``: its size before the start)."""
    try:
        with open(t["log"], "rb") as f:
            f.seek(max(0, t.get("offset", 0)))
            return f.read().decode(errors="replace")
    except OSError as e:
        return f"(no log: {e})"


def exited(t: dict) -> bool:
    """The plain supervisor logs '=== <time> exited with <rc>; restart #n' when the role process ends."""
    return t.get("mode") != "systemd" and t.get("offset", 0) >= 0 and "exited with" in since(t)


def main() -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    targets, timeout, pki = json.loads(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    creds = None
    if pki and os.path.exists(os.path.join(pki, "server.pem")):
        def read(name: str) -> bytes:
            with open(os.path.join(pki, name), "rb") as f:
                return f.read()
        creds = grpc.ssl_channel_credentials(read("ca.pem"), read("server-key.pem"), read("server.pem"))
    t0 = time.monotonic()
    deadline = t0 + timeout
    ok = True
    for t in targets:
        state, detail = "UNAVAILABLE", ""
        ch = None
        if t.get("health"):
            ch = grpc.secure_channel(t["health"], creds) if creds else grpc.insecure_channel(t["health"])
        while True:
            if not alive(t) or exited(t):
                state = "EXITED"
                break
            if ch is None:
                state = "RUNNING"
                break
            try:
                r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
                state = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
                if state == "SERVING":
                    break
            except grpc.RpcError as e:
                state, detail = "UNAVAILABLE", f"{e.code().name}: {e.details()}"
            if time.monotonic() > deadline:
                break
            time.sleep(0.3)
        if ch is not None:
            ch.close()
        good = state in ("SERVING", "RUNNING")
        ok &= good
        print(json.dumps({"name": t["name"], "state": state, "detail": detail, "seconds": round(time.monotonic() - t0, 2),
                          "log": "" if good else "".join(since(t).splitlines(True)[-25:])}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
