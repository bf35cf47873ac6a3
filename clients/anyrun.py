"""ANY.RUN Sandbox API client (API v1).

Endpoints: POST /v1/analysis (submit), GET /v1/analysis (history, used to find
a task by its idempotency tag), GET /v1/analysis/monitor/{uuid} (SSE status
stream), GET /v1/analysis/{uuid} (report), GET /report/{uuid}/ioc/json (IOCs),
GET /v1/user (limits).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

import httpx
import httpx_sse

from clients import errors
from clients.http import ServiceClient
from clients.redaction import register_secret

# ANY.RUN monitor statuses: -1 failed, 50-99 running, 100 completed.
STATUS_FAILED = -1
STATUS_COMPLETED = 100

HISTORY_PAGE_SIZE = 100  # the API's maximum `limit`


class AnyRunClient(ServiceClient):
    service = "ANY.RUN"

    def __init__(self, base_url: str, api_key: str, *, connector_id: str, **kwargs):
        super().__init__(
            base_url, headers={"x-anyrun-connector": connector_id}, **kwargs
        )
        if not api_key:
            raise ValueError("ANY.RUN API key is empty")
        self._api_key = api_key
        register_secret(api_key)

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"API-Key {self._api_key}"}

    def raise_for_status(self, operation: str, response: httpx.Response) -> None:
        try:
            super().raise_for_status(operation, response)
        except errors.ThrottledError as exc:
            if operation == "submit analysis":
                raise errors.QuotaExceededError(
                    exc.service,
                    exc.operation,
                    exc.status,
                    exc.api_message,
                    code=exc.code,
                    retry_after=exc.retry_after,
                ) from None
            raise

    def submit_url(self, url: str, options: dict[str, Any], tag: str) -> str:
        """Submit a URL analysis tagged with `tag`; return the task uuid."""
        body = {**options, "obj_type": "url", "obj_url": url, "user_tags": tag}
        response = self.call(
            "submit analysis", "POST", "/v1/analysis", json=body, idempotent=False
        )
        return self._task_id(response)

    def submit_file(
        self,
        open_stream: Callable[[], IO[bytes]],
        filename: str,
        options: dict[str, Any],
        tag: str,
    ) -> str:
        """Submit a file as a streamed multipart upload; return the task uuid.

        `open_stream` is called for every attempt, because a consumed stream
        cannot be sent again.
        """
        fields = {key: _form_value(value) for key, value in options.items()}
        fields.update({"obj_type": "file", "user_tags": tag})

        def attempt() -> httpx.Response:
            stream = open_stream()
            try:
                response = self._http.post(
                    "/v1/analysis",
                    data=fields,
                    files={"file": (filename, stream, "application/octet-stream")},
                    headers=self.auth_headers(),
                )
            except httpx.TransportError as exc:
                raise self.transport_error("submit analysis", exc) from None
            finally:
                stream.close()
            self.raise_for_status("submit analysis", response)
            return response

        response = self.with_retries("submit analysis", attempt, idempotent=False)
        return self._task_id(response)

    def _task_id(self, response: httpx.Response) -> str:
        body = response.json()
        data = body.get("data") or {}
        task_id = data.get("taskid") or body.get("taskid")
        if not task_id:
            queued = data.get("queueTaskId")
            detail = (
                f"queued as {queued}, not started" if queued else "no taskid in answer"
            )
            raise errors.ApiError(
                self.service, "submit analysis", response.status_code, detail
            )
        return str(task_id)

    def find_task_by_tag(self, tag: str) -> str | None:
        """Return the uuid of the newest recent task carrying `tag`, if any."""
        response = self.call(
            "list analyses",
            "GET",
            "/v1/analysis",
            params={"team": "false", "skip": 0, "limit": HISTORY_PAGE_SIZE},
        )
        tasks = (response.json().get("data") or {}).get("tasks") or []
        for task in tasks:
            tags = task.get("tags") or []
            names = {t.get("tag") if isinstance(t, dict) else t for t in tags}
            if tag in names:
                return str(task.get("uuid"))
        return None

    def get_status(self, task_id: str, follow_seconds: float = 0) -> dict[str, Any]:
        """Read the monitor stream and return a status snapshot.

        With `follow_seconds` 0 the first event is returned. Otherwise, when
        the first event reports that the task ends within `follow_seconds`,
        the stream is read until an event reports its end or until that many
        wall seconds have passed, and the last event read is returned.
        """
        path = f"/v1/analysis/monitor/{task_id}"

        def attempt() -> dict[str, Any]:
            latest = None
            started = time.monotonic()
            try:
                with httpx_sse.connect_sse(
                    self._http, "GET", path, headers=self.auth_headers()
                ) as source:
                    if source.response.status_code >= 400:
                        # The error body is read before it is parsed.
                        source.response.read()
                    self.raise_for_status("monitor analysis", source.response)
                    if "text/event-stream" not in source.response.headers.get(
                        "content-type", ""
                    ):
                        body = source.response.read()
                        raise errors.ApiError(
                            self.service,
                            "monitor analysis",
                            source.response.status_code,
                            f"expected an event stream, got {body[:120]!r}",
                        )
                    for event in source.iter_sse():
                        if not event.data.strip():
                            continue
                        latest = parse_monitor_event(json.loads(event.data))
                        if not _keep_following(latest, started, follow_seconds):
                            return latest
            except httpx.TimeoutException as exc:
                if latest is not None:
                    return latest
                raise self.transport_error("monitor analysis", exc) from None
            except httpx.TransportError as exc:
                raise self.transport_error("monitor analysis", exc) from None
            except httpx_sse.SSEError as exc:
                raise errors.TransportError(
                    self.service, "monitor analysis", str(exc)
                ) from None
            if latest is not None:
                return latest
            raise errors.TransportError(
                self.service, "monitor analysis", "stream closed before the first event"
            )

        return self.with_retries("monitor analysis", attempt)

    def get_report(self, task_id: str) -> dict[str, Any]:
        response = self.call("get report", "GET", f"/v1/analysis/{task_id}")
        return response.json().get("data") or {}

    def get_iocs(self, task_id: str) -> list[dict[str, Any]]:
        response = self.call("get IOCs", "GET", f"/report/{task_id}/ioc/json")
        body = response.json()
        if isinstance(body, dict):
            body = body.get("data") or []
        return [item for item in body if isinstance(item, dict)]

    def get_limits(self) -> dict[str, Any]:
        response = self.call("get user limits", "GET", "/v1/user")
        return (response.json().get("data") or {}).get("limits") or {}


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ChunkReader(io.RawIOBase):
    """A read-only file object over an iterator of byte chunks (no seeking)."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def _keep_following(
    status: dict[str, Any], started: float, follow_seconds: float
) -> bool:
    """Tell whether to read another monitor event after `status`."""
    if status["state"] != "running" or follow_seconds <= 0:
        return False
    if time.monotonic() - started >= follow_seconds:
        return False
    return status["remaining"] <= follow_seconds


def parse_monitor_event(event: dict[str, Any]) -> dict[str, Any]:
    """Condense one monitor event into state, seconds remaining and verdict."""
    task = event.get("task") or {}
    try:
        status = int(task.get("status", 0))
    except (TypeError, ValueError):
        status = 0
    try:
        remaining = max(0, int(float(task.get("remaining") or 0)))
    except (TypeError, ValueError):
        remaining = 0
    if status == STATUS_FAILED or event.get("error") is True:
        state = "failed"
    elif status >= STATUS_COMPLETED or event.get("completed") is True:
        state = "done"
    else:
        state = "running"
    verdict = (task.get("scores") or {}).get("verdict") or {}
    return {
        "state": state,
        "status": status,
        "remaining": remaining,
        "threat_level": verdict.get("threat_level"),
        "verdict": verdict.get("text"),
    }
