"""Shared fixtures: a dev PKI + tokens made by `atlasrl certs init`'s code, and secure configs."""
import pytest

from atlasrl.rpc.config import SecurityConfig
from atlasrl.rpc.devcerts import init_dev_pki
from atlasrl.rpc.security import set_default_security


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    good = init_dev_pki(tmp_path_factory.mktemp("pki"), ["localhost"], ["127.0.0.1"], days=2)
    rogue = init_dev_pki(tmp_path_factory.mktemp("rogue"), ["localhost"], ["127.0.0.1"], days=2)
    return good, rogue


def token_of(paths, role: str) -> str:
    for line in paths[f"tokens_{role}"].read_text().splitlines():
        r, _, rest = line.partition(":")
        if r == role and not rest.startswith("sha256:"):
            return rest
    raise KeyError(role)


def server_sec(paths, role="envserver", mtls=True, tokens=True, **kw) -> SecurityConfig:
    return SecurityConfig(tls_cert=paths["server"], tls_key=paths["server_key"], tls_ca=paths["ca"], mtls=mtls,
                          token_file=paths[f"tokens_{role}"] if tokens else None, client_role=role, **kw)


def client_sec(paths, role="actor", cert="client", tokens=True, ca=None) -> SecurityConfig:
    return SecurityConfig(tls_cert=paths[cert] if cert else None, tls_key=paths[f"{cert}_key"] if cert else None,
                          tls_ca=ca or paths["ca"], token_file=paths[f"tokens_{role}"] if tokens else None, client_role=role)


@pytest.fixture
def process_security():
    """Set the process default like a role CLI does; restored afterwards so other tests see plaintext."""
    yield set_default_security
    set_default_security(None)


@pytest.fixture(autouse=True)
def _no_security_env(monkeypatch):
    for name in ("ATLASRL_TOKENS", "ATLASRL_TOKEN_FILE", "ATLASRL_TLS_CERT", "ATLASRL_TLS_KEY", "ATLASRL_TLS_CA",
                 "ATLASRL_MTLS", "ATLASRL_INSECURE", "ATLASRL_ROLE"):
        monkeypatch.delenv(name, raising=False)
