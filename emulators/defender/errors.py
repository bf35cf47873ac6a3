"""Defender for Endpoint API errors: ``{"error": {"code", "message", "target"}}``.

``target`` is a correlation id, a new GUID for each error as in the published
examples. The codes are the documented ones: BadRequest, InvalidInput,
InvalidRequestBody, ODataError (400), Unauthorized (401), Forbidden,
DisallowedOperation (403), ResourceNotFound (404), TooManyRequests (429, with
``Retry-After`` in seconds), InternalServerError (500).
"""

import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

DEFAULT_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "ResourceNotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
}
_FAULT_MESSAGES = {
    429: "Too many requests. Retry after the number of seconds in Retry-After.",
    500: "An internal server error occurred.",
    502: "The gateway did not receive a response in time.",
    503: "The service is temporarily unavailable.",
}


class DefenderError(Exception):
    """An API error that a route handler returns as a Defender error body."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        retry_after: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or DEFAULT_CODES.get(status, "Error")
        self.message = message
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        headers = dict(self.headers)
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return web.json_response(
            error_body(self.code, self.message), status=self.status, headers=headers
        )


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "target": str(uuid.uuid4())}}


class DefenderErrorShape:
    """Error bodies for the shared middlewares and injected faults."""

    def error(self, request: web.Request, status: int, message: str) -> dict[str, Any]:
        return error_body(DEFAULT_CODES.get(status, "Error"), message)

    def fault(
        self, request: web.Request, status: int, retry_after: int | None
    ) -> dict[str, Any]:
        message = _FAULT_MESSAGES.get(status, f"Request failed with status {status}.")
        return error_body(DEFAULT_CODES.get(status, "Error"), message)
