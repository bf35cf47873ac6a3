"""Validation of the operator endpoints' query parameters, route values and bodies.

Every check raises ParameterError naming the parameter, so that the route
responds with 400 and `{"error", "field", "message"}` and changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Runtime statuses of the Durable Functions 1.x SDK (OrchestrationRuntimeStatus).
RUNTIME_STATUSES = (
    "Pending",
    "Running",
    "Completed",
    "Failed",
    "Terminated",
    "Suspended",
    "ContinuedAsNew",
    "Canceled",
)
# Statuses in which an enrichment has ended and can be rerun or purged.
FINISHED_STATUSES = ("Completed", "Failed", "Terminated")
# Statuses in which the task hub never runs the instance again.
TERMINAL_STATUSES = (*FINISHED_STATUSES, "Canceled")

PARENT_PREFIX = "inc-"
MAX_INSTANCE_ID_LENGTH = 100
DEFAULT_TOP = 50
MAX_TOP = 500
MAX_OLDER_THAN_DAYS = 3650
PURGE_FIELDS = ("olderThanDays", "statuses")

_STATUS_BY_LOWER = {status.lower(): status for status in RUNTIME_STATUSES}
_CURSOR_VERSION = 1
_ID_CHARACTERS = re.compile(r"[A-Za-z0-9._-]+")


class ParameterError(ValueError):
    """A parameter is missing or invalid; `field` names it."""

    def __init__(self, field: str, message: str, code: str = "invalid_parameter"):
        super().__init__(message)
        self.field = field
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Cursor:
    """Position at which a listing stopped: a task hub page and the entries read.

    `page_token` is the task hub's continuation token of that page (None for
    the first page). The next listing reads the page again and resumes after
    `after_id`, or after `skip` entries when that instance is gone.
    """

    page_token: str | None
    after_id: str | None
    skip: int
    page_size: int
    filters: str


@dataclass(frozen=True)
class ListQuery:
    """The filters and page size of `GET /api/incidents`."""

    statuses: tuple[str, ...]
    created_after: datetime | None
    created_before: datetime | None
    top: int
    cursor: Cursor | None = None

    def fingerprint(self) -> str:
        """Return a short digest of the filters, so a token fits only its query."""
        parts = [
            ",".join(self.statuses),
            self.created_after.isoformat() if self.created_after else "",
            self.created_before.isoformat() if self.created_before else "",
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PurgeRequest:
    """The body of `POST /api/incidents/purge`."""

    older_than_days: int
    statuses: tuple[str, ...]


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_statuses(
    field: str, names: list[str], allowed: tuple[str, ...]
) -> tuple[str, ...]:
    """Map status names (any letter case) to their canonical spelling, in order."""
    found: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        status = _STATUS_BY_LOWER.get(name.lower())
        if status is None or status not in allowed:
            raise ParameterError(
                field,
                f"{field} {_shorten(name)!r} is not allowed; use one or more of "
                f"{', '.join(allowed)}",
            )
        if status not in found:
            found.append(status)
    return tuple(found)


def parse_time(field: str, text: str) -> datetime:
    """Parse an ISO 8601 date or date and time; a value without offset is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ParameterError(
            field,
            f"{field} {_shorten(text)!r} is not an ISO 8601 date or time; send "
            "for example 2025-01-31 or 2025-01-31T08:00:00Z",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_top(text: str | None) -> int:
    if text is None or text.strip() == "":
        return DEFAULT_TOP
    try:
        top = int(text.strip())
    except ValueError:
        top = None
    if top is None or not 1 <= top <= MAX_TOP:
        raise ParameterError(
            "top",
            f"top must be a whole number from 1 to {MAX_TOP}, got {_shorten(text)!r}",
        )
    return top


def parse_list_query(params: Mapping[str, str]) -> ListQuery:
    """Read the query parameters of `GET /api/incidents`; raise ParameterError.

    Other parameters, such as the function key in `code`, are ignored.
    """
    statuses = parse_statuses(
        "status", (params.get("status") or "").split(","), RUNTIME_STATUSES
    )
    after = params.get("createdAfter")
    before = params.get("createdBefore")
    query = ListQuery(
        statuses=statuses,
        created_after=parse_time("createdAfter", after) if after else None,
        created_before=parse_time("createdBefore", before) if before else None,
        top=parse_top(params.get("top")),
    )
    if (
        query.created_after
        and query.created_before
        and query.created_after > query.created_before
    ):
        raise ParameterError(
            "createdBefore",
            "createdBefore must not be earlier than createdAfter",
        )
    token = params.get("continuationToken")
    if token:
        cursor = decode_cursor(token)
        if cursor.filters != query.fingerprint():
            raise ParameterError(
                "continuationToken",
                "the continuation token belongs to a listing with other status or "
                "createdAfter/createdBefore values; repeat those values or list "
                "again without the token",
            )
        return ListQuery(
            query.statuses, query.created_after, query.created_before, query.top, cursor
        )
    return query


def encode_cursor(cursor: Cursor) -> str:
    """Encode a cursor as the URL-safe continuationToken of a listing."""
    fields = {
        "v": _CURSOR_VERSION,
        "t": cursor.page_token,
        "a": cursor.after_id,
        "s": cursor.skip,
        "n": cursor.page_size,
        "f": cursor.filters,
    }
    raw = json.dumps(fields, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> Cursor:
    """Decode a continuationToken; raise ParameterError if this app did not make it."""
    invalid = ParameterError(
        "continuationToken",
        "the continuation token is invalid; use the continuationToken of the "
        "previous response unchanged, or list again without it",
    )
    try:
        padded = token.strip() + "=" * (-len(token.strip()) % 4)
        fields = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeEncodeError):
        raise invalid from None
    if not isinstance(fields, dict) or fields.get("v") != _CURSOR_VERSION:
        raise invalid
    page_token, after_id = fields.get("t"), fields.get("a")
    skip, page_size, filters = fields.get("s"), fields.get("n"), fields.get("f")
    if (
        not isinstance(page_token, str | None)
        or not isinstance(after_id, str | None)
        or not isinstance(skip, int)
        or not isinstance(page_size, int)
        or not isinstance(filters, str)
        or skip < 0
        or page_size < 1
    ):
        raise invalid
    return Cursor(page_token, after_id, skip, page_size, filters)


def parse_parent_id(text: str) -> str:
    """Check that a route value names an enrichment (a parent instance); return it."""
    if (
        not text.startswith(PARENT_PREFIX)
        or len(text) > MAX_INSTANCE_ID_LENGTH
        or not _ID_CHARACTERS.fullmatch(text)
    ):
        raise ParameterError(
            "instanceId",
            "expected the id of an enrichment as returned by POST /api/incidents "
            f"(inc-..., at most {MAX_INSTANCE_ID_LENGTH} letters, digits, dots, "
            "underscores and hyphens; a sub-orchestration id with ':' is not one)",
            code="invalid_instance_id",
        )
    return text


def parse_purge_request(body: Any) -> PurgeRequest:
    """Read the JSON body of `POST /api/incidents/purge`; raise ParameterError."""
    if not isinstance(body, dict):
        raise ParameterError(
            "$",
            'expected a JSON object such as {"olderThanDays": 30}',
        )
    unknown = sorted(set(body) - set(PURGE_FIELDS))
    if unknown:
        # A misspelt field must not widen the purge, so it is an error.
        raise ParameterError(
            unknown[0],
            f"unknown field {_shorten(unknown[0])!r}; the body takes "
            f"{' and '.join(PURGE_FIELDS)}",
        )
    days = body.get("olderThanDays")
    if isinstance(days, bool) or not isinstance(days, int):
        raise ParameterError(
            "olderThanDays",
            f"olderThanDays is required: a whole number of days from 0 to "
            f"{MAX_OLDER_THAN_DAYS}",
        )
    if not 0 <= days <= MAX_OLDER_THAN_DAYS:
        raise ParameterError(
            "olderThanDays",
            f"olderThanDays must be from 0 to {MAX_OLDER_THAN_DAYS}, got {days}",
        )
    statuses: tuple[str, ...] = FINISHED_STATUSES
    if "statuses" in body:
        names = body["statuses"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ParameterError(
                "statuses",
                "statuses must be a list of runtime statuses, for example "
                '["Completed", "Failed"]',
            )
        statuses = parse_statuses("statuses", names, FINISHED_STATUSES)
        if not statuses:
            raise ParameterError(
                "statuses",
                f"statuses must name at least one of {', '.join(FINISHED_STATUSES)}",
            )
    return PurgeRequest(days, statuses)
