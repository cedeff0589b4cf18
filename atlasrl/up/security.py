"""Secure mode of `atlasrl up` (``run.secure``): a dev PKI and role tokens in the run directory, and who presents what.

    sec = RunSecurity.create(run_dir / "pki", host="127.0.0.1")   # `atlasrl certs init` into the run directory
    argv += sec.role_flags("envserver")    # --tls-cert --tls-key --tls-ca --mtls --token-file pki/tokens/envserver.tokens
    CoordinatorClient(addr, channel_config=sec.channel_config())   # the up process: client certificate + admin token

Each role gets exactly the flags of a secure multi-host deployment (docs/security.md), so `up` exercises
that path; only paths travel on command lines and in the environment, never token contents.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from atlasrl.rpc.config import ChannelConfig, SecurityConfig


@dataclass(frozen=True)
class RunSecurity:
    pki: Path

    @classmethod
    def create(cls, pki: Path, host: str) -> RunSecurity:
        """Fresh CA, certificates (SAN: ``host`` and localhost) and tokens; a resumed run gets new ones too."""
        from atlasrl.rpc.devcerts import init_dev_pki

        init_dev_pki(pki, hosts=["localhost"], ips=[host])
        return cls(pki)

    def token_file(self, role: str) -> Path:
        return self.pki / "tokens" / f"{role}.tokens"

    def role_flags(self, role: str) -> list[str]:
        """The shared role CLI flags (cli/common.role_options): TLS with client certificates and this role's token."""
        return ["--tls-cert", str(self.pki / "server.pem"), "--tls-key", str(self.pki / "server-key.pem"),
                "--tls-ca", str(self.pki / "ca.pem"), "--mtls", "--token-file", str(self.token_file(role))]

    def channel_config(self, role: str = "admin") -> ChannelConfig:
        """Channels of the up process itself: health checks, status, run state (admin only), memory atlases."""
        return ChannelConfig(security=SecurityConfig(
            tls_cert=self.pki / "client.pem", tls_key=self.pki / "client-key.pem", tls_ca=self.pki / "ca.pem",
            token_file=self.token_file(role), client_role=role))
