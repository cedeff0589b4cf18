"""Domain errors of the memory; the service maps them to gRPC status codes."""


class MemoryInputError(ValueError):
    """Bad input (INVALID_ARGUMENT): the message names the field and the problem."""


class UnknownFamily(LookupError):
    """The memory never saw this family (NOT_FOUND)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown family"


class TooLarge(ValueError):
    """An input exceeds a configured bound (RESOURCE_EXHAUSTED)."""
