"""Analysis records and sandbox slots, kept in the analysis table.

An analysis record (partition "analysis") belongs to the sub-orchestration
that claimed it with a conditional insert, so two incidents that race for the
same object cannot both submit it. Its row key is `enrichment.records.record_key`
(the object and its options) when reuse is on, or the sub-orchestration's own
key when it is off. Fields, all times in the orchestrations' durable time:

    owner          sub-orchestration instance id that submits
    stale_at       when a claim without a task id may be taken over
    submitting     true from just before the POST until the task id is stored
    submitting_since  wall-clock UTC time of that flag (see below)
    task_id        the sandbox task, once submitted
    expected_end   submission time plus opt_timeout
    deadline       when a task that never finished stops being followed
    reuse_until    submission time plus REUSE_WINDOW_HOURS
    done           true once the owner saw the task complete

The durable times come from the orchestrator's input, so they lag behind by
as long as the activity waited in the queue. Two rules keep that lag from
paying for an object twice. Another owner's record that has a task id but is
past its deadline is "unconfirmed": the sandbox is asked about the task before
the record is taken over. And a claim flagged `submitting` is not taken over
while a POST sent at `submitting_since` could still land
(`SUBMIT_IN_FLIGHT_SECONDS`, wall time, the same clock in every worker), nor
after it when the previous owner's tag finds a task.

A slot (partition "slot", row key its index) is held by one sub-orchestration
from just before its submission until its status check reads the task's end,
and expires at the analysis deadline, so a crashed sub-orchestration frees it
then. At most `limit` slots exist, so at most that many tasks run at once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from clients.tables import AnalysisTable, Entity

log = logging.getLogger("connector.records")

ANALYSES = "analysis"
SLOTS = "slot"
# Attempts of one read-then-conditional-write before giving up on a busy row.
MAX_RACE_ATTEMPTS = 5
# Seconds a waiter sleeps when no held slot has an expected end.
SLOT_RETRY_SECONDS = 30
# Seconds after a task's expected end before its owner frees the slot (its
# first status check runs then).
SLOT_RELEASE_GRACE_SECONDS = 5


def wall_now() -> datetime:
    return datetime.now(UTC)


class LimitUnknown(RuntimeError):
    """The sandbox account's parallel limit could not be read."""


class RecordConflict(RuntimeError):
    """A row kept changing under a conditional write; the activity is retried."""


@dataclass
class RecordRequest:
    """The claim an orchestrator requests (the activity input "record")."""

    key: str
    owner: str
    now: datetime
    stale_seconds: int
    window_hours: int
    timeout: int
    margin: int
    obj: str = ""

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> RecordRequest:
        return cls(
            key=str(payload["key"]),
            owner=str(payload["owner"]),
            now=datetime.fromisoformat(payload["now"]),
            stale_seconds=int(payload["stale_seconds"]),
            window_hours=int(payload.get("window_hours") or 0),
            timeout=int(payload["timeout"]),
            margin=int(payload["margin"]),
            obj=str(payload.get("object") or "")[:1000],
        )


@dataclass
class Claim:
    """The outcome of a claim: "owned", "reused" (another's task), "pending", or
    "unconfirmed" (another's record that only the sandbox can confirm or void)."""

    status: str
    row: Entity
    etag: str | None = None
    existed: bool = field(default=False)

    @property
    def task_id(self) -> str | None:
        return self.row.get("task_id") or None

    def answer(self) -> dict[str, Any]:
        """Return the activity result for a claim that is not this caller's own."""
        if self.status == "reused":
            return {
                "status": "reused",
                "task_id": self.row["task_id"],
                "done": bool(self.row.get("done")),
                "expected_end": self.row.get("expected_end"),
                "owner": self.row.get("owner"),
            }
        return {
            "status": "pending",
            "owner": self.row.get("owner"),
            "reason": "another incident is submitting the same object "
            f"({self.row.get('owner')})",
        }


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _usable(row: Entity, now: datetime) -> bool:
    """Tell whether another owner's record is still valid (not stale, not expired)."""
    if not row.get("task_id"):
        stale_at = _time(row.get("stale_at"))
        return stale_at is not None and now < stale_at
    reuse_until = _time(row.get("reuse_until"))
    if reuse_until is None or now >= reuse_until:
        return False
    if row.get("done"):
        return True
    deadline = _time(row.get("deadline"))
    return deadline is not None and now < deadline


def _unconfirmed(row: Entity, now: datetime) -> bool:
    """Tell whether another owner's unusable record may still stand for a task."""
    if row.get("task_id"):
        reuse_until = _time(row.get("reuse_until"))
        return not row.get("done") and reuse_until is not None and now < reuse_until
    return bool(row.get("submitting"))


def in_flight(row: Entity, seconds: float) -> bool:
    """Tell whether the row's POST was flagged less than `seconds` ago (wall time)."""
    since = _time(row.get("submitting_since"))
    return since is None or wall_now() - since < timedelta(seconds=seconds)


def take_over(table: AnalysisTable, request: RecordRequest, row: Entity) -> Claim:
    """Replace another owner's record with a claim of `request.owner`."""
    entity = _new_claim(request)
    etag = table.replace(entity, row["etag"])
    if etag is None:
        raise RecordConflict(f"the analysis record {request.key} changed")
    log.info("records.taken_over key=%s from=%s", request.key, row.get("owner"))
    return Claim("owned", entity, etag)


def confirm_task(
    table: AnalysisTable,
    row: Entity,
    request: RecordRequest,
    task_id: str,
    *,
    done: bool,
    remaining: int,
) -> Entity:
    """Store the sandbox's status of another owner's task, best effort.

    The record keeps its owner. It gets the task id (when only the tag found
    it), the done flag, and a deadline counted from now, so that the next
    claims reuse the task without another sandbox call.
    """
    now = request.now
    entity = {
        **row,
        "submitting": False,
        "task_id": task_id,
        "done": bool(row.get("done")) or done,
        "expected_end": (now + timedelta(seconds=remaining)).isoformat(),
        "deadline": (now + timedelta(seconds=remaining + request.margin)).isoformat(),
        "reuse_until": row.get("reuse_until")
        or (now + timedelta(hours=request.window_hours)).isoformat(),
    }
    entity.pop("etag", None)
    if table.replace(entity, row["etag"]) is None:
        log.info("records.confirm_skipped key=%s: the record changed", request.key)
    return entity


def _new_claim(request: RecordRequest) -> Entity:
    return {
        "PartitionKey": ANALYSES,
        "RowKey": request.key,
        "object": request.obj,
        "owner": request.owner,
        "claimed_at": request.now.isoformat(),
        "stale_at": (
            request.now + timedelta(seconds=request.stale_seconds)
        ).isoformat(),
        "submitting": False,
        "done": False,
    }


def claim(table: AnalysisTable, request: RecordRequest) -> Claim:
    """Claim the record for `request.owner`, or return the valid record of another.

    An existing record of the same owner is returned as owned with
    `existed=True` (a redelivery or a retry after a wait); its stale time is
    moved forward. A stale or expired record of another owner is taken over
    with an etag-conditional replace.
    """
    for _ in range(MAX_RACE_ATTEMPTS):
        row = table.get(ANALYSES, request.key)
        if row is None:
            entity = _new_claim(request)
            etag = table.insert(entity)
            if etag is not None:
                return Claim("owned", entity, etag)
            continue
        if row.get("owner") == request.owner:
            if row.get("task_id"):
                return Claim("owned", row, row["etag"], existed=True)
            refreshed = {
                **row,
                "stale_at": (
                    request.now + timedelta(seconds=request.stale_seconds)
                ).isoformat(),
            }
            etag = table.replace(refreshed, row["etag"])
            if etag is not None:
                return Claim("owned", refreshed, etag, existed=True)
            continue
        if _usable(row, request.now):
            return Claim("reused" if row.get("task_id") else "pending", row)
        if _unconfirmed(row, request.now):
            return Claim("unconfirmed", row, row["etag"])
        entity = _new_claim(request)
        etag = table.replace(entity, row["etag"])
        if etag is not None:
            log.info("records.taken_over key=%s from=%s", request.key, row.get("owner"))
            return Claim("owned", entity, etag)
    raise RecordConflict(f"the analysis record {request.key} kept changing")


def mark_submitting(table: AnalysisTable, claimed: Claim) -> bool:
    """Flag the owned record just before the POST; False if the claim was lost."""
    entity = {
        **claimed.row,
        "submitting": True,
        "submitting_since": wall_now().isoformat(),
    }
    etag = table.replace(entity, claimed.etag)
    if etag is None:
        return False
    claimed.row, claimed.etag = entity, etag
    return True


def clear_submitting(table: AnalysisTable, claimed: Claim) -> None:
    """Clear the flag after a response that proves no task was created."""
    entity = {**claimed.row, "submitting": False}
    etag = table.replace(entity, claimed.etag)
    if etag is not None:
        claimed.row, claimed.etag = entity, etag


def record_task(
    table: AnalysisTable, claimed: Claim, request: RecordRequest, task_id: str
) -> None:
    """Store the task id in the owned record, so that others reuse the task."""
    now = request.now
    entity = {
        **claimed.row,
        "submitting": False,
        "task_id": task_id,
        "submitted_at": now.isoformat(),
        "expected_end": (now + timedelta(seconds=request.timeout)).isoformat(),
        "deadline": (
            now + timedelta(seconds=request.timeout + request.margin)
        ).isoformat(),
        "reuse_until": (now + timedelta(hours=request.window_hours)).isoformat(),
    }
    etag = table.replace(entity, claimed.etag)
    if etag is None:
        log.warning(
            "records.task_not_stored key=%s task=%s: the claim was taken over",
            request.key,
            task_id,
        )
        return
    claimed.row, claimed.etag = entity, etag


def drop_claim(table: AnalysisTable, key: str, owner: str) -> bool:
    """Delete a record of `owner` that has no task id (its submission failed)."""
    row = table.get(ANALYSES, key)
    if row is None or row.get("owner") != owner or row.get("task_id"):
        return False
    return table.delete(ANALYSES, key, row["etag"])


def finish_record(table: AnalysisTable, key: str, owner: str, *, done: bool) -> None:
    """Mark the owner's record done, or delete it when its task failed."""
    row = table.get(ANALYSES, key)
    if row is None or row.get("owner") != owner:
        return
    if done:
        if not row.get("done"):
            table.replace({**row, "done": True}, row["etag"])
        return
    # A failed task is not reused: the next incident submits the object again.
    table.delete(ANALYSES, key, row["etag"])


# Slots ---------------------------------------------------------------------


@dataclass
class SlotAnswer:
    """Index of the slot taken, or None with the time a slot should free up."""

    index: int | None
    in_use: int
    retry_at: datetime | None = None


def _slot(index: int, owner: str, expires_at: datetime) -> Entity:
    return {
        "PartitionKey": SLOTS,
        "RowKey": _slot_key(index),
        "owner": owner,
        "expires_at": expires_at.isoformat(),
    }


def _live(row: Entity, now: datetime) -> bool:
    expires_at = _time(row.get("expires_at"))
    return expires_at is not None and now < expires_at


def acquire_slot(
    table: AnalysisTable,
    owner: str,
    limit: int,
    now: datetime,
    expires_at: datetime,
) -> SlotAnswer:
    """Take a free slot below `limit` for `owner`, or return when to try again.

    Slot rows are taken with a conditional insert, or an etag-conditional
    replace of an expired row, so two acquirers never hold the same index. A
    slot the owner already has is returned again (a redelivered activity).
    """
    for _ in range(MAX_RACE_ATTEMPTS):
        rows = table.rows(SLOTS)
        for row in rows:
            if row.get("owner") == owner and _live(row, now):
                return SlotAnswer(int(row["RowKey"]), len(rows))
        live = [row for row in rows if _live(row, now)]
        if len(live) >= limit:
            ends = [_time(row.get("expected_end")) for row in live]
            known = [end for end in ends if end is not None]
            if known:
                retry_at = min(known) + timedelta(seconds=SLOT_RELEASE_GRACE_SECONDS)
            else:
                retry_at = now + timedelta(seconds=SLOT_RETRY_SECONDS)
            return SlotAnswer(None, len(live), max(retry_at, now))
        by_index = {int(row["RowKey"]): row for row in rows}
        for index in range(limit):
            row = by_index.get(index)
            if row is None:
                if table.insert(_slot(index, owner, expires_at)) is not None:
                    return SlotAnswer(index, len(live) + 1)
            elif not _live(row, now):
                if table.replace(_slot(index, owner, expires_at), row["etag"]):
                    return SlotAnswer(index, len(live) + 1)
    raise RecordConflict("the sandbox slots kept changing")


def _slot_key(index: int) -> str:
    return f"{index:04d}"


def attach_task(
    table: AnalysisTable,
    index: int,
    owner: str,
    task_id: str,
    expected_end: datetime,
) -> None:
    """Note the task and its expected end on the owner's slot, for waiters' timers."""
    row = table.get(SLOTS, _slot_key(index))
    if row is None or row.get("owner") != owner:
        return
    table.replace(
        {**row, "task_id": task_id, "expected_end": expected_end.isoformat()},
        row["etag"],
    )


def release_slot(table: AnalysisTable, owner: str, index: int | None = None) -> int:
    """Free the slot `owner` holds; return how many were freed.

    With its `index` only that row is read, without it every slot row.
    """
    if index is not None:
        row = table.get(SLOTS, _slot_key(index))
        candidates = [] if row is None else [row]
    else:
        candidates = table.rows(SLOTS)
    freed = 0
    for row in candidates:
        if row.get("owner") == owner and table.delete(
            SLOTS, row["RowKey"], row["etag"]
        ):
            freed += 1
    return freed


# The sandbox's parallel limit ----------------------------------------------

LIMIT_CACHE_SECONDS = 300
# A failed read is tried again after this many seconds; until then only the
# SANDBOX_MAX_PARALLEL cap applies.
LIMIT_RETRY_SECONDS = 30
_limit_lock = threading.Lock()
_limit_cache: dict[str, Any] = {"value": None, "read_at": None}


def cached_limit(read_total, cap: int) -> int | None:
    """Return the slot limit: the account's parallels, capped by SANDBOX_MAX_PARALLEL.

    `read_total` returns the account's `parallels.total` (GET /v1/user); it
    is called at most once per LIMIT_CACHE_SECONDS in a worker process, or
    LIMIT_RETRY_SECONDS after it raised LimitUnknown. None means no limit is
    known (an unlimited plan and no cap).
    """
    with _limit_lock:
        read_at = _limit_cache["read_at"]
        if read_at is None or time.monotonic() - read_at >= LIMIT_CACHE_SECONDS:
            read_at = time.monotonic()
            try:
                _limit_cache["value"] = read_total()
            except LimitUnknown:
                _limit_cache["value"] = None
                read_at -= LIMIT_CACHE_SECONDS - LIMIT_RETRY_SECONDS
            _limit_cache["read_at"] = read_at
        total = _limit_cache["value"]
    limits = [value for value in (total, cap) if value is not None and value > 0]
    return min(limits) if limits else None


def forget_limit() -> None:
    """Drop the cached account limit (tests that change the emulator's limit)."""
    with _limit_lock:
        _limit_cache.update(value=None, read_at=None)
