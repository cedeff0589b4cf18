"""The built-in grid games pass the EnvService compliance suite."""
from tests.envserver.compliance import EnvServiceCompliance


class TestFrozenLakeService(EnvServiceCompliance):
    env_id = "frozenlake"
    config = {"size": "4"}
    valid_action = "Right"


class TestSokobanService(EnvServiceCompliance):
    env_id = "sokoban"
    config = {"size": "6", "num_boxes": "1"}
    valid_action = "Left, Up"
