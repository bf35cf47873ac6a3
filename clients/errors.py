"""Errors raised by the HTTP clients.

    ConnectorError
    ├── TransportError          no answer: connect, read or write failed or timed out
    └── ApiError                the service answered with an error status
        ├── ThrottledError      429: too many requests; carries retry_after
        │   └── QuotaExceededError   sandbox task or daily quota reached
        ├── ServerError         5xx
        ├── AuthenticationError 401 or 403
        ├── NotFoundError       404
        ├── ConflictError       409 (stale etag)
        └── RejectedError       400, 413, 422: the request itself is wrong

TransportError, ThrottledError and ServerError are retryable: the shared retry
policy in `clients.http` looks at these classes, never at message text. The
others are answers the caller acts on. Messages name the service, operation
and status, and never contain a secret, a query string or a request body.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of every client error."""

    retryable = False


class TransportError(ConnectorError):
    """The request got no answer (connect, read or write failed or timed out)."""

    retryable = True

    def __init__(self, service: str, operation: str, detail: str):
        self.service = service
        self.operation = operation
        super().__init__(f"{service} {operation} failed without an answer: {detail}")


class ApiError(ConnectorError):
    """The service answered with an error status."""

    def __init__(
        self,
        service: str,
        operation: str,
        status: int,
        message: str,
        code: str | None = None,
    ):
        self.service = service
        self.operation = operation
        self.status = status
        self.code = code
        self.api_message = message
        label = f"{status} {code}" if code else str(status)
        super().__init__(f"{service} {operation} returned {label}: {message}")


class ThrottledError(ApiError):
    """HTTP 429; `retry_after` is the wait the service asked for, in seconds."""

    retryable = True

    def __init__(self, *args, retry_after: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class QuotaExceededError(ThrottledError):
    """The sandbox refused a task because the parallel or daily quota is used up."""


class ServerError(ApiError):
    """HTTP 5xx."""

    retryable = True


class AuthenticationError(ApiError):
    """HTTP 401 or 403: the key, token or role is wrong or missing."""


class NotFoundError(ApiError):
    """HTTP 404."""


class ConflictError(ApiError):
    """HTTP 409: the resource changed since it was read (stale etag)."""


class RejectedError(ApiError):
    """HTTP 400, 413 or 422: the request is invalid and repeating it will not help."""


def error_for_status(
    service: str,
    operation: str,
    status: int,
    message: str,
    code: str | None = None,
    retry_after: float | None = None,
) -> ApiError:
    """Build the ApiError subclass that matches an HTTP error status."""
    args = (service, operation, status, message, code)
    if status == 429:
        return ThrottledError(*args, retry_after=retry_after)
    if status >= 500:
        return ServerError(*args)
    if status in (401, 403):
        return AuthenticationError(*args)
    if status == 404:
        return NotFoundError(*args)
    if status == 409:
        return ConflictError(*args)
    if status in (400, 413, 422):
        return RejectedError(*args)
    return ApiError(*args)
