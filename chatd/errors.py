"""The one exception type that carries a client-visible error code."""


class ChatError(Exception):
    """A request was refused; ``code`` is stable, ``message`` is for people."""

    def __init__(self, code: str, message: str, rid=None):
        super().__init__(code, message)
        self.code = code
        self.message = message
        # The request's id, when input was refused after its id could be read.
        self.rid = rid

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


# Codes that close the session after the error is sent.
FATAL_CODES = frozenset(
    {"too_many_connections", "too_many_from_ip", "excess_flood", "shutting_down"}
)
