"""The actor tests' fixtures, shared: the session's tiny CPU engine and a real env server on port 0."""
from tests.actors.conftest import env_server, tiny_engine  # noqa: F401  (pytest fixtures, found by name)
