"""Deprecated: the actor's env-server client is ``atlasrl.clients.env.EnvClient``.

Kept only for ``atlasrl actor eval`` (atlasrl/cli/actor.py), which still imports
``EnvLink``; new code calls ``atlasrl.actors.rollout.env_clients(addresses)``.
Delete this module once that import is gone.
"""
from __future__ import annotations

from atlasrl.clients.env import EnvClient


def EnvLink(address: str) -> EnvClient:  # noqa: N802 - the old class name
    """The actor's client of one env server, as ``env_clients`` makes it."""
    from atlasrl.actors.rollout import env_clients

    return env_clients([address])[0]
