"""Typed run config (importable without torch): `load_config(file, ["actor.num_envs=8"])`."""
from atlasrl.config.loader import ConfigError, dump_config, load_config
from atlasrl.config.schema import RunConfig

__all__ = ["ConfigError", "RunConfig", "dump_config", "load_config"]
