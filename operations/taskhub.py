"""The task hub as the operator endpoints see it: paged queries, start and purge.

Status, start and purge go through the SDK's DurableOrchestrationClient. The
1.x SDK (1.7.0) has no paged query: `get_status_by` sends no `top`, ignores
the `x-ms-continuation-token` response header, and so returns only the host's
first page of 100 instances. `TaskHub.query_page` therefore sends the same
`GET {rpcBaseUrl}instances/` request itself, with `top`, `showInput` and the
continuation header.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from operations.params import PARENT_PREFIX, Cursor

CONTINUATION_HEADER = "x-ms-continuation-token"
# Entries per task hub request when scanning for enrichments. Each enrichment
# brings one sub-orchestration per object, which the scan reads and skips.
SCAN_PAGE_SIZE = 100
RPC_TIMEOUT_SECONDS = 60.0
# Continuation header values that mean "no further page".
LAST_PAGE_TOKENS = frozenset({"null"})
# Parallel purge requests for the sub-orchestrations of one enrichment.
PURGE_CONCURRENCY = 8

_RERUN_ID = re.compile(r"(?P<base>.+)-r(?P<number>[1-9][0-9]{0,5})")


class TaskHubError(Exception):
    """A task hub query failed or returned an unexpected response."""


def is_parent_id(instance_id: str) -> bool:
    """Tell whether an instance id names an enrichment, not a sub-orchestration."""
    return instance_id.startswith(PARENT_PREFIX) and ":" not in instance_id


def rerun_base(instance_id: str) -> str:
    """Return the id a rerun id was derived from (the id itself if no rerun).

    Ids from the webhook end with 12 hexadecimal digits, which never read
    `-r<n>`, so the suffix is unambiguous.
    """
    match = _RERUN_ID.fullmatch(instance_id)
    return match["base"] if match else instance_id


def rerun_number(base: str, instance_id: str) -> int | None:
    """Return n when instance_id is `<base>-r<n>`, else None."""
    match = _RERUN_ID.fullmatch(instance_id)
    if match is None or match["base"] != base:
        return None
    return int(match["number"])


def format_time(moment: datetime) -> str:
    """Format a time for the management API's createdTimeFrom/createdTimeTo."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class QueryFilters:
    """Server-side filters of a task hub query."""

    prefix: str
    statuses: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    show_input: bool = False


class TaskHub:
    """Queries and changes instances through a durable client binding."""

    def __init__(self, client: Any):
        self.client = client
        # NOTE: the binding's rpcBaseUrl is read through a private attribute of
        # DurableOrchestrationClient, because the 1.x SDK exposes no public one.
        bindings = getattr(client, "_orchestration_bindings", None)
        rpc_base_url = getattr(bindings, "rpc_base_url", None)
        if not rpc_base_url:
            raise TaskHubError(
                "the durable client binding has no rpcBaseUrl; the host's local "
                "RPC endpoint is needed to list instances"
            )
        self.rpc_base_url = rpc_base_url.rstrip("/") + "/"

    async def query_page(
        self, filters: QueryFilters, page_size: int, page_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Read one page of instance statuses; return them and the next page's token."""
        params = {
            "instanceIdPrefix": filters.prefix,
            "top": str(page_size),
            "showInput": "true" if filters.show_input else "false",
        }
        if filters.statuses:
            params["runtimeStatus"] = ",".join(filters.statuses)
        if filters.created_from:
            params["createdTimeFrom"] = format_time(filters.created_from)
        if filters.created_to:
            params["createdTimeTo"] = format_time(filters.created_to)
        headers = {CONTINUATION_HEADER: page_token} if page_token else {}

        # The RPC endpoint is the host's own loopback listener: no proxy applies.
        async with httpx.AsyncClient(
            timeout=RPC_TIMEOUT_SECONDS, trust_env=False
        ) as http:
            try:
                response = await http.get(
                    f"{self.rpc_base_url}instances/", params=params, headers=headers
                )
            except httpx.HTTPError as exc:
                raise TaskHubError(
                    f"listing instances failed: {type(exc).__name__}: {exc}"
                ) from exc

        if response.status_code != 200:
            raise TaskHubError(f"listing instances returned {response.status_code}")
        try:
            statuses = response.json()
        except ValueError as exc:
            raise TaskHubError("listing instances returned no JSON") from exc
        if not isinstance(statuses, list):
            raise TaskHubError("listing instances returned no JSON array")
        next_token = response.headers.get(CONTINUATION_HEADER) or None
        # NOTE: the host may send the header with "null" on the last page.
        if next_token in LAST_PAGE_TOKENS:
            next_token = None
        return [s for s in statuses if isinstance(s, dict)], next_token

    async def query_all(
        self, filters: QueryFilters, max_pages: int = 20
    ) -> list[dict[str, Any]]:
        """Read every page of a small query, such as one enrichment's children."""
        found: list[dict[str, Any]] = []
        token = None
        for _ in range(max_pages):
            page, token = await self.query_page(filters, SCAN_PAGE_SIZE, token)
            found.extend(page)
            if token is None:
                return found
        raise TaskHubError(
            f"more than {max_pages * SCAN_PAGE_SIZE} instances start with "
            f"{filters.prefix!r}"
        )

    async def scan_parents(
        self,
        filters: QueryFilters,
        top: int,
        cursor: Cursor | None,
        *,
        fingerprint: str,
        max_pages: int,
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        """Collect up to `top` enrichments, skipping sub-orchestrations.

        Reads at most `max_pages` task hub pages, so one page of the listing may
        hold fewer than `top` enrichments. Returns them with the cursor to
        continue from, or None when the task hub has no more.
        """
        page_size = cursor.page_size if cursor else SCAN_PAGE_SIZE
        page_token = cursor.page_token if cursor else None
        found: list[dict[str, Any]] = []
        for page_number in range(max_pages):
            page, next_token = await self.query_page(filters, page_size, page_token)
            start = _resume_index(page, cursor) if page_number == 0 and cursor else 0
            for index in range(start, len(page)):
                entry = page[index]
                if not is_parent_id(str(entry.get("instanceId") or "")):
                    continue
                found.append(entry)
                if len(found) == top:
                    if index + 1 < len(page):
                        resume = Cursor(
                            page_token,
                            entry["instanceId"],
                            index + 1,
                            page_size,
                            fingerprint,
                        )
                    elif next_token:
                        resume = Cursor(next_token, None, 0, page_size, fingerprint)
                    else:
                        resume = None
                    return found, resume
            if next_token is None:
                return found, None
            page_token = next_token
        return found, Cursor(page_token, None, 0, page_size, fingerprint)

    async def status(self, instance_id: str, *, show_input: bool = False):
        """Return the instance's DurableOrchestrationStatus, or None if unknown."""
        status = await self.client.get_status(instance_id, show_input=show_input)
        if not status or status.runtime_status is None:
            return None
        return status

    async def start(self, name: str, instance_id: str, client_input: Any) -> None:
        await self.client.start_new(
            name, instance_id=instance_id, client_input=client_input
        )

    async def purge(self, instance_ids: list[str]) -> int:
        """Purge finished instances, a few at a time; return how many were deleted."""
        limit = asyncio.Semaphore(PURGE_CONCURRENCY)

        async def purge_one(instance_id: str) -> int:
            async with limit:
                result = await self.client.purge_instance_history(instance_id)
                return int(result.instances_deleted or 0)

        counts = await asyncio.gather(*(purge_one(i) for i in instance_ids))
        return sum(counts)


def _resume_index(page: list[dict[str, Any]], cursor: Cursor) -> int:
    """Find where a listing stopped in a page it reads again."""
    if cursor.after_id:
        for index, entry in enumerate(page):
            if entry.get("instanceId") == cursor.after_id:
                return index + 1
    return min(cursor.skip, len(page))
