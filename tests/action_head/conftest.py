"""Action-head tests: a real env server on port 0 (start_server); process_group comes from tests/conftest.py."""
from tests.envserver.conftest import start_server  # noqa: F401  (a real env server on port 0)
