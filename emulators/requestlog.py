"""In-memory log of the API requests that an emulator served."""

from collections import deque
from datetime import UTC, datetime
from typing import Any

from emulators.clock import iso_utc

# NOTE: the oldest entries are dropped past this many, so a long soak run keeps
# only its recent requests.
MAX_ENTRIES = 100_000


class RequestLog:
    """Method, path, status and wall time of each request.

    record() takes only these fields, so headers, query strings and bodies,
    where clients send their secrets, never reach the log.
    """

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=max_entries)

    def record(self, method: str, path: str, status: int) -> None:
        self._entries.append(
            {
                "method": method,
                "path": path,
                "status": status,
                "time": iso_utc(datetime.now(UTC), digits=6),
            }
        )

    def entries(self) -> list[dict[str, Any]]:
        return list(self._entries)

    def clear(self) -> None:
        self._entries.clear()
