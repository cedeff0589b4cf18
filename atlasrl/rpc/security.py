"""TLS credentials, role-scoped bearer tokens and the bind-address policy.

Token file (one entry a line, ``#`` comments)::

    actor:9f8Zk...           # plaintext: presented by this process, accepted by its servers
    learner:sha256:4c1e...   # hashed: accepted by servers only (safe to copy to every host)

Several entries per role are all valid at once, which is how tokens rotate.
Servers compare SHA-256 digests with ``hmac.compare_digest``; plaintext tokens
are never logged and never taken from the command line (they would show in ``ps``).
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from atlasrl.rpc.config import SecurityConfig

log = logging.getLogger("atlasrl.rpc")

ROLES = ("actor", "learner", "envserver", "memory", "coordinator", "admin", "critic")
ANY = "*"
MIN_TOKEN_CHARS = 16

# Who may call what. Keys are "pkg.Service/Method" or "pkg.Service"; ANY = any valid token.
# Methods not listed are open to any valid token; grpc.health.v1.Health needs none.
DEFAULT_METHOD_ROLES: dict[str, tuple[str, ...]] = {
    "atlasrl.v1.TrajectoryService/Push": ("actor",),
    "atlasrl.v1.TrajectoryService/CloseGroups": ("actor",),
    "atlasrl.v1.WeightService/Publish": ("learner",),
    "atlasrl.v1.WeightService/Subscribe": ("actor", "learner", "admin"),
    "atlasrl.v1.WeightService/GetLatest": ("actor", "learner", "admin"),
    "atlasrl.v1.MemoryService/Reset": ("admin",),
    "atlasrl.v1.MemoryService/Delete": ("admin",),
    "atlasrl.v1.MemoryService/Snapshot": ("admin", "learner", "coordinator"),
    "atlasrl.v1.MemoryService/Ingest": ("actor", "learner", "envserver", "admin"),
    "atlasrl.v1.CoordinatorService/SetRunState": ("admin",),
}
UNAUTHENTICATED_SERVICES = ("grpc.health.v1.Health",)


class SecurityError(ValueError):
    """Unusable security settings (bad token file, missing key, unsafe bind)."""


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass
class TokenStore:
    """Accepted token digests per role plus the plaintext tokens this process may present."""

    digests: list[tuple[str, bytes]] = field(default_factory=list)
    plain: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.digests)

    def __repr__(self) -> str:  # never show secrets, even in a debugger or a log line
        return f"TokenStore(roles={sorted({r for r, _ in self.digests})}, presents={sorted(self.plain)})"

    def role_of(self, token: str) -> str | None:
        """The role of ``token`` or None. Compares against every entry (no early exit on a match)."""
        d = token_digest(token)
        found = None
        for role, digest in self.digests:
            if hmac.compare_digest(d, digest) and found is None:
                found = role
        return found

    def client_token(self, role: str | None) -> str | None:
        if role is not None:
            return self.plain.get(role)
        if len(self.plain) > 1:
            raise SecurityError(f"token file holds plaintext tokens for {sorted(self.plain)}; say which role this process is")
        return next(iter(self.plain.values()), None)


def parse_tokens(text: str, source: str = "tokens") -> TokenStore:
    store = TokenStore()
    entries = [e for line in text.splitlines() for e in line.split("#", 1)[0].replace(",", " ").split()]
    for n, entry in enumerate(entries, 1):
        role, sep, rest = entry.partition(":")
        if not sep or role not in ROLES:
            raise SecurityError(f"{source}: entry {n} is not 'role:token' with a role among {', '.join(ROLES)}")
        if rest.startswith("sha256:"):
            hexd = rest[len("sha256:"):]
            try:
                digest = bytes.fromhex(hexd)
            except ValueError:
                digest = b""
            if len(digest) != 32:
                raise SecurityError(f"{source}: entry {n} ({role}) has a sha256 digest that is not 64 hex digits")
            store.digests.append((role, digest))
            continue
        if len(rest) < MIN_TOKEN_CHARS:
            raise SecurityError(f"{source}: entry {n} ({role}) has a token shorter than {MIN_TOKEN_CHARS} characters")
        store.digests.append((role, token_digest(rest)))
        store.plain.setdefault(role, rest)
    return store


def load_tokens(sec: SecurityConfig) -> TokenStore:
    """Tokens from ``sec.token_file``, else $ATLASRL_TOKEN_FILE, else $ATLASRL_TOKENS (same format)."""
    path = sec.token_file or (Path(os.environ["ATLASRL_TOKEN_FILE"]) if os.environ.get("ATLASRL_TOKEN_FILE") else None)
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise SecurityError(f"cannot read token file {path}: {e.strerror}") from None
        return parse_tokens(text, str(path))
    if os.environ.get("ATLASRL_TOKENS"):
        return parse_tokens(os.environ["ATLASRL_TOKENS"], "$ATLASRL_TOKENS")
    return TokenStore()


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise SecurityError(f"cannot read {what} {path}: {e.strerror}") from None


def server_credentials(sec: SecurityConfig):
    """grpc.ServerCredentials, or None for plaintext."""
    import grpc

    if not (sec.tls_cert or sec.tls_key):
        if sec.mtls:
            raise SecurityError("--mtls needs --tls-cert, --tls-key and --tls-ca")
        return None
    if not (sec.tls_cert and sec.tls_key):
        raise SecurityError("TLS needs both --tls-cert and --tls-key")
    if sec.mtls and not sec.tls_ca:
        raise SecurityError("--mtls needs --tls-ca (the CA that signed the client certificates)")
    pair = (_read(sec.tls_key, "TLS key"), _read(sec.tls_cert, "TLS certificate"))
    return grpc.ssl_server_credentials([pair], root_certificates=_read(sec.tls_ca, "TLS CA"), require_client_auth=sec.mtls)


def channel_credentials(sec: SecurityConfig):
    """grpc.ChannelCredentials, or None for plaintext. TLS is on when a CA is given."""
    import grpc

    if not sec.tls_ca:
        return None
    if bool(sec.tls_cert) != bool(sec.tls_key):
        raise SecurityError("a client certificate needs both --tls-cert and --tls-key")
    return grpc.ssl_channel_credentials(root_certificates=_read(sec.tls_ca, "TLS CA"),
                                        private_key=_read(sec.tls_key, "TLS key"),
                                        certificate_chain=_read(sec.tls_cert, "TLS certificate"))


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost6"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, sec: SecurityConfig, tls: bool, tokens: bool) -> None:
    """Refuse a non-loopback bind without TLS and tokens unless ``insecure``."""
    if is_loopback(host) or (tls and tokens):
        return
    missing = " and ".join(x for x, ok in (("TLS (--tls-cert/--tls-key)", tls), ("tokens (--token-file)", tokens)) if not ok)
    if not sec.insecure:
        raise SecurityError(f"refusing to serve on non-loopback address {host} without {missing}; "
                            "configure them, or pass --insecure on a network you trust")
    log.warning("!!! INSECURE: serving on %s without %s; anyone who can reach this port can use it !!!", host, missing)


def allowed_roles(full_method: str, overrides: dict[str, list[str]] | None = None) -> tuple[str, ...] | None:
    """Roles allowed to call ``/pkg.Service/Method``; None = no token needed (health)."""
    name = full_method.lstrip("/")
    service = name.split("/", 1)[0]
    if service in UNAUTHENTICATED_SERVICES:
        return None
    table = {**DEFAULT_METHOD_ROLES, **{k: tuple(v) for k, v in (overrides or {}).items()}}
    return table.get(name) or table.get(service) or (ANY,)


_default: SecurityConfig | None = None


def set_default_security(sec: SecurityConfig | None) -> None:
    """Process-wide security for servers and channels that set none (the role CLIs call this)."""
    global _default
    _default = sec


def default_security() -> SecurityConfig:
    """The process default, else one built from ATLASRL_TLS_CERT/KEY/CA, ATLASRL_MTLS, ATLASRL_ROLE, ATLASRL_INSECURE."""
    if _default is not None:
        return _default
    env = os.environ

    def p(name):
        return Path(env[name]) if env.get(name) else None

    return SecurityConfig(tls_cert=p("ATLASRL_TLS_CERT"), tls_key=p("ATLASRL_TLS_KEY"), tls_ca=p("ATLASRL_TLS_CA"),
                          mtls=env.get("ATLASRL_MTLS", "") in ("1", "true", "yes"),
                          client_role=env.get("ATLASRL_ROLE") or None,
                          insecure=env.get("ATLASRL_INSECURE", "") in ("1", "true", "yes"))
