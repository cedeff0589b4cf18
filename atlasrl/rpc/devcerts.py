"""A development PKI and token set for a multi-host run (``atlasrl certs init``).

Writes into DIR::

    ca.pem ca-key.pem            # the CA (keep ca-key.pem off the cluster hosts)
    server.pem server-key.pem    # every role's certificate: SANs = hosts + IPs, server and client auth
    client.pem client-key.pem    # for tools (atlasrl status, debug) under --mtls: client auth only
    tokens/<role>.tokens         # that role's plaintext token + SHA-256 digests of every role's tokens

A host running role R gets ca.pem, server.pem, server-key.pem and tokens/R.tokens;
no host but the operator's sees another role's plaintext token.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from pathlib import Path

from atlasrl.rpc.security import ROLES, token_digest


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_secret(path, pem)


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _cert(subject_cn: str, key, issuer_cn: str, issuer_key, days: int, *, ca: bool = False, sans=(), server: bool = True):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                                          encipher_only=False, decipher_only=False), critical=True)
    else:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
        b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def init_dev_pki(out: Path, hosts: list[str], ips: list[str], days: int = 365) -> dict[str, Path]:
    """Create the CA, certificates and tokens under ``out``; return the paths written."""
    try:
        import cryptography  # noqa: F401  (the 'certs' extra: only certificate generation needs it)
    except ImportError:
        raise RuntimeError("generating certificates needs the 'certs' extra: pip install 'atlasrl[certs]'") from None
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    out.mkdir(parents=True, exist_ok=True)
    sans = [x509.DNSName(h) for h in hosts] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    ca_key = _key()
    ca = _cert("atlasrl dev CA", ca_key, "atlasrl dev CA", ca_key, days, ca=True)
    srv_key, cli_key = _key(), _key()
    srv = _cert(hosts[0] if hosts else "atlasrl", srv_key, "atlasrl dev CA", ca_key, days, sans=sans)
    cli = _cert("atlasrl-client", cli_key, "atlasrl dev CA", ca_key, days, server=False)
    paths = {name: out / f for name, f in (("ca", "ca.pem"), ("ca_key", "ca-key.pem"), ("server", "server.pem"),
                                           ("server_key", "server-key.pem"), ("client", "client.pem"),
                                           ("client_key", "client-key.pem"))}
    pem = serialization.Encoding.PEM
    paths["ca"].write_bytes(ca.public_bytes(pem))
    paths["server"].write_bytes(srv.public_bytes(pem))
    paths["client"].write_bytes(cli.public_bytes(pem))
    _write_key(paths["ca_key"], ca_key)
    _write_key(paths["server_key"], srv_key)
    _write_key(paths["client_key"], cli_key)

    tokens = {role: secrets.token_urlsafe(32) for role in ROLES}
    hashed = "".join(f"{r}:sha256:{token_digest(t).hex()}\n" for r, t in tokens.items())
    (out / "tokens").mkdir(exist_ok=True)
    for role, token in tokens.items():
        path = out / "tokens" / f"{role}.tokens"
        _write_secret(path, f"# atlasrl tokens for the {role} host: its own token, then every accepted digest\n"
                            f"{role}:{token}\n{hashed}".encode())
        paths[f"tokens_{role}"] = path
    return paths
