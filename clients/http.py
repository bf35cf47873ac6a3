"""Shared HTTP plumbing: one httpx client per service and one retry policy.

Retries cover transport errors, 429 and 5xx (classes marked `retryable` in
`clients.errors`), honour `Retry-After` up to a cap, and stop after a bounded
number of attempts. Calls that are not idempotent (a paid sandbox submission)
retry only when the request cannot have been processed: a failed connect or
a 429.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx
import tenacity

from clients import errors
from clients.redaction import strip_query

log = logging.getLogger("connector.http")

T = TypeVar("T")


def parse_retry_after(value: str | None) -> float | None:
    """Read a Retry-After header: delta seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ServiceClient:
    """Base of the API clients: timeouts, auth headers, error mapping, retries."""

    service = "HTTP"

    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float = 30.0,
        max_attempts: int = 5,
        max_retry_wait_seconds: float = 60.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self.max_attempts = max_attempts
        self.max_retry_wait_seconds = max_retry_wait_seconds
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_seconds, connect=min(10.0, timeout_seconds)),
            headers=dict(headers or {}),
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    # Subclasses supply credentials per request (tokens expire).
    def auth_headers(self) -> dict[str, str]:
        return {}

    def error_details(self, response: httpx.Response) -> tuple[str, str | None]:
        """Return (message, vendor code) from an error response body."""
        try:
            body = response.json()
        except ValueError:
            return (response.text[:200] or response.reason_phrase, None)
        if isinstance(body, dict):
            inner = body.get("error")
            if isinstance(inner, dict):
                return (str(inner.get("message", "")), inner.get("code"))
            message = body.get("message") or body.get("description") or ""
            return (
                str(message),
                body.get("code") if isinstance(body.get("code"), str) else None,
            )
        return (str(body)[:200], None)

    def raise_for_status(self, operation: str, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        message, code = self.error_details(response)
        raise errors.error_for_status(
            self.service,
            operation,
            response.status_code,
            message,
            code=code,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        idempotent: bool = True,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: Any = None,
        files: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request under the retry policy and return the 2xx response."""

        def attempt() -> httpx.Response:
            request_headers = {**self.auth_headers(), **(headers or {})}
            try:
                response = self._http.request(
                    method,
                    path,
                    params=params,
                    json=json,
                    content=content,
                    files=files,
                    data=data,
                    headers=request_headers,
                )
            except httpx.TransportError as exc:
                raise self.transport_error(operation, exc) from None
            self.raise_for_status(operation, response)
            return response

        return self.with_retries(operation, attempt, idempotent=idempotent)

    def transport_error(
        self, operation: str, exc: httpx.TransportError
    ) -> errors.TransportError:
        error = errors.TransportError(self.service, operation, type(exc).__name__)
        # A request that never connected cannot have been processed.
        error.not_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        return error

    def with_retries(
        self, operation: str, attempt: Callable[[], T], *, idempotent: bool = True
    ) -> T:
        """Run `attempt` under the shared retry policy."""

        def should_retry(exc: BaseException) -> bool:
            if not isinstance(exc, errors.ConnectorError) or not exc.retryable:
                return False
            if idempotent:
                return True
            return isinstance(exc, errors.ThrottledError) or getattr(
                exc, "not_sent", False
            )

        exponential = tenacity.wait_exponential_jitter(
            initial=1, max=self.max_retry_wait_seconds
        )

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, errors.ThrottledError) and exc.retry_after is not None:
                return min(exc.retry_after, self.max_retry_wait_seconds)
            return exponential(state)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "http.retry service=%s operation=%s attempt=%d status=%s wait=%.1fs",
                self.service,
                operation,
                state.attempt_number,
                getattr(exc, "status", type(exc).__name__),
                state.next_action.sleep if state.next_action else 0.0,
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=wait,
            retry=tenacity.retry_if_exception(should_retry),
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        return retrying(attempt)

    def describe(self, path: str) -> str:
        """Return a loggable form of a request target (no query string)."""
        return strip_query(f"{self.base_url}{path}")
