"""Errors raised by the engine's management operations.

The HTTP layer maps them to the status codes of the Durable HTTP API:
InstanceNotFound 404, InstanceFinished 410, InstanceExists 409,
UnknownOrchestrator 400, InvalidOperation 410 or 409 depending on the call.
"""


class EngineError(Exception):
    """Base of the errors a management call can raise."""


class InstanceNotFound(EngineError):
    pass


class InstanceFinished(EngineError):
    """The instance is completed, failed or terminated."""


class InstanceExists(EngineError):
    """An instance with that id is pending, running or suspended."""


class UnknownOrchestrator(EngineError):
    pass


class InvalidOperation(EngineError):
    pass
