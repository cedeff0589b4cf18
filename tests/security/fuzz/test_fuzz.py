"""Hypothesis fuzzing of every RPC of every service on main, over real loopback gRPC.

Services and methods are discovered from what each role's server registered
(tests/security/services.py), so new ones are fuzzed without editing this file.
Cases per RPC: $ATLASRL_FUZZ_CASES (default 60 in CI; raise it, or run
bench/fuzz.py, for longer campaigns). For every case: the reply is a status with
a message (never a hang, INTERNAL/UNKNOWN or a traceback), the server is still
SERVING, and a rejected request left the server's state unchanged.
"""
import os

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlasrl.rpc import make_channel
from atlasrl.rpc.config import ChannelConfig

from ..services import ROLE_SERVERS, Stack
from .engine import KINDS, call, healthy, payload, problems

CASES = int(os.environ.get("ATLASRL_FUZZ_CASES", "60"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("fuzz")).start()
    yield s
    s.stop()


def test_every_v1_service_is_hosted(stack):
    import importlib
    import pkgutil

    from google.protobuf import descriptor_pool

    import atlasrl.v1 as v1

    declared = set()
    for mod in pkgutil.iter_modules(v1.__path__):
        if mod.name.endswith("_pb2"):
            declared |= {s.full_name for s in importlib.import_module(f"atlasrl.v1.{mod.name}").DESCRIPTOR.services_by_name.values()}
    hosted = {svc.full_name for h in stack.hosted for svc in h.services}
    assert declared <= hosted, f"services without a server in tests/security/services.py: {declared - hosted}"
    assert descriptor_pool.Default()


def fuzz_method(stack, hosted, md, cases: int, failures: list | None = None):
    ch = make_channel(hosted.address, ChannelConfig(max_message_bytes=64 << 20), aio=False)
    found = failures if failures is not None else []

    @settings(max_examples=cases, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(kind=st.sampled_from(KINDS), seed=st.integers(0, 2**32 - 1), raw=st.binary(max_size=1024))
    def one(kind, seed, raw):
        data = payload(md.input_type, kind, seed, raw)
        before = stack.state(hosted)
        out = call(ch, md, data)
        bad = problems(md, out)
        if out.code != grpc.StatusCode.OK and stack.state(hosted) != before:
            bad.append(f"rejected ({out.code.name}) but state changed: {before} -> {stack.state(hosted)}")
        if not healthy(ch, md.containing_service.full_name):
            bad.append("server not SERVING afterwards")
        if bad:
            found.append((f"{md.full_name}", kind, seed, bad))
            if failures is None:
                raise AssertionError(f"{md.full_name} kind={kind} seed={seed}: {bad}")

    try:
        one()
    finally:
        ch.close()
    return found


@pytest.mark.parametrize("role", list(ROLE_SERVERS))
def test_fuzz_every_rpc(stack, role):
    hosted = next(h for h in stack.hosted if h.role == role)
    methods = [md for svc in hosted.services for md in svc.methods]
    assert methods
    failures = []
    for md in methods:
        fuzz_method(stack, hosted, md, CASES, failures)
    assert not failures, "\n".join(f"{m} kind={k} seed={s}: {b}" for m, k, s, b in failures[:20])
