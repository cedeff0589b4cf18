from tests.envserver.conftest import start_server  # noqa: F401  (a real env server on port 0)
