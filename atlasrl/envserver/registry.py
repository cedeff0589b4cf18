"""Env registry keyed by id, so new envs plug in without touching the server.

    register("frozenlake", FrozenLakeEnv.from_config)      # exact id
    register_prefix("maniskill", make_maniskill)           # "maniskill:PickCube-v1"
    env = make("frozenlake", {"size": "8"}, seed=0)
"""
from __future__ import annotations

from collections.abc import Callable

from atlasrl.envserver.base import TextEnv

Factory = Callable[..., TextEnv]  # factory(config: dict[str, str], seed: int | None, env_id: str) -> TextEnv

_EXACT: dict[str, Factory] = {}
_PREFIX: dict[str, Factory] = {}
_LISTERS: dict[str, Callable[[], list[str]]] = {}


class UnknownEnv(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def register(env_id: str, factory: Factory) -> None:
    _EXACT[env_id] = factory


def register_prefix(prefix: str, factory: Factory, lister: Callable[[], list[str]] | None = None) -> None:
    """Ids "<prefix>:<name>" go to factory; lister names the ids worth listing."""
    _PREFIX[prefix] = factory
    if lister:
        _LISTERS[prefix] = lister


def make(env_id: str, config: dict[str, str] | None = None, seed: int | None = None) -> TextEnv:
    _load_builtin()
    factory = _EXACT.get(env_id)
    if factory is None and ":" in env_id:
        factory = _PREFIX.get(env_id.split(":", 1)[0])
    if factory is None:
        raise UnknownEnv(f"unknown env id '{env_id}'; registered: {', '.join(list_ids()) or 'none'}")
    return factory(dict(config or {}), seed, env_id)


def list_ids(include_prefixed: bool = True) -> list[str]:
    _load_builtin()
    ids = sorted(_EXACT)
    if include_prefixed:
        for _prefix, lister in sorted(_LISTERS.items()):
            try:
                ids += lister()
            except Exception:  # noqa: BLE001 - optional backends may be absent
                pass
    return ids


def prefixes() -> list[str]:
    """The registered id prefixes ("maniskill" serves "maniskill:<Task>"), listed or not."""
    _load_builtin()
    return sorted(_PREFIX)


_loaded = False


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import atlasrl.envserver.envs  # registers the built-in envs
    import atlasrl.envserver.maniskill  # maniskill:<Task>; mani_skill imported lazily
    import atlasrl.envserver.miniworld  # noqa: F401  (miniworld:<Env>; miniworld imported lazily)
