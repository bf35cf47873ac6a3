"""One sandbox submission, paid for once: claim, slot, POST, record.

Both submit activities run `submit_once`. With the analysis table it:

1. claims the analysis record (activities/records.py). Another incident's
   valid record is returned as "reused" (it has a task) or "pending" (it is
   being submitted), and nothing is sent. Another's expired record that may
   still stand for a task is checked with the sandbox first: a live task is
   reused, a failed or missing one lets this owner take the record over;
2. returns the task id already stored in an owned record (a redelivered
   activity whose first run finished);
3. looks the idempotency tag up in the sandbox history only when the record
   shows that a POST may have been sent without its task id being stored.
   That happens when a worker crashed between the POST and the record update;
4. takes a sandbox slot, or returns "no_slot" with the time to try again;
5. flags the record as submitting, sends the POST, and stores the task id
   in the record and the slot. When the POST's outcome is unknown (no
   response, or a 5xx), it waits one client timeout and looks the tag up
   before the activity fails and is retried.

Without the table it looks the tag up before every submission, as the only
guard against a redelivered activity paying twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import clients
from activities import records
from clients import errors
from enrichment.results import idempotency_tag
from settings import current

log = logging.getLogger("connector.activities")


class NotSubmitted(Exception):
    """The submission stopped before the POST; `answer` goes back to the orchestrator.

    With `keep_claim` False the record is deleted, so that another incident
    may submit the object (for example after a hash mismatch).
    """

    def __init__(self, answer: dict[str, Any], *, keep_claim: bool = False):
        super().__init__(answer.get("reason") or answer.get("status"))
        self.answer = answer
        self.keep_claim = keep_claim


def _throttled(exc: errors.QuotaExceededError) -> dict[str, Any]:
    return {
        "status": "throttled",
        "reason": exc.api_message or "sandbox quota reached",
        "retry_after": exc.retry_after,
    }


def _rejected(exc: errors.ConnectorError) -> dict[str, Any]:
    reason = str(exc)
    if isinstance(exc, errors.AuthenticationError):
        reason = f"{exc} (check ANYRUN_API_KEY)"
    return {"status": "rejected", "reason": reason}


def _read_parallels() -> int | None:
    try:
        limits = clients.anyrun().get_limits()
    except errors.ConnectorError as exc:
        log.warning("sandbox.limits_unknown error=%s", exc)
        raise records.LimitUnknown(str(exc)) from None
    try:
        return int((limits.get("parallels") or {}).get("total"))
    except (TypeError, ValueError):
        return None


def slot_limit() -> int | None:
    """Return how many sandbox tasks may run at once, or None for no limit."""
    return records.cached_limit(_read_parallels, current().sandbox_max_parallel)


def _send_without_table(
    tag: str, send: Callable[[], str], cleanup: Callable[[], None]
) -> dict[str, Any]:
    sandbox = clients.anyrun()
    existing = sandbox.find_task_by_tag(tag)
    if existing:
        cleanup()
        log.info("analysis.reused tag=%s task=%s", tag, existing)
        return {"status": "submitted", "task_id": existing, "reused": True}
    task_id, reused = _send_or_find(tag, send, cleanup)
    _log_sent(tag, task_id, reused)
    return {"status": "submitted", "task_id": task_id, "reused": reused}


def _log_sent(tag: str, task_id: str, reused: bool) -> None:
    if reused:
        log.info("analysis.reused tag=%s task=%s", tag, task_id)
    else:
        log.info("analysis.submitted tag=%s task=%s", tag, task_id)


def _send_or_find(
    tag: str, send: Callable[[], str], cleanup: Callable[[], None]
) -> tuple[str, bool]:
    """Send the POST and return (task id, False), or (task id, True) for a task
    that its tag finds after an unknown outcome. Re-raise when the tag finds none.
    """
    try:
        return send(), False
    except (errors.TransportError, errors.ServerError) as exc:
        if getattr(exc, "not_sent", False):
            raise
        found = settle_and_find(tag, exc)
        if found is None:
            raise
        cleanup()
        return found, True


def submit_once(
    payload: dict[str, Any],
    send: Callable[[], str],
    cleanup: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Submit through `send` unless the record, the slots or the tag prevent it.

    `send` performs the POST and returns the task id; it may raise
    NotSubmitted for a check that fails before the POST. `cleanup` runs when
    a task is found for this submission without a POST (the file activity
    deletes its blob).
    """
    tag = payload["tag"]
    table = clients.analysis_table()
    record = payload.get("record")
    try:
        if table is None or not record:
            return _send_without_table(tag, send, cleanup)
        return _submit_with_record(table, payload, send, cleanup)
    except NotSubmitted as stop:
        return stop.answer
    except errors.QuotaExceededError as exc:
        log.warning("analysis.quota tag=%s error=%s", tag, exc)
        return _throttled(exc)
    except (errors.RejectedError, errors.AuthenticationError) as exc:
        log.warning("analysis.rejected tag=%s error=%s", tag, exc)
        return _rejected(exc)


def _submit_with_record(
    table, payload: dict[str, Any], send, cleanup
) -> dict[str, Any]:
    tag = payload["tag"]
    request = records.RecordRequest.from_payload(payload["record"])
    claimed = records.claim(table, request)
    if claimed.status == "unconfirmed":
        answer = _confirm_other(table, request, claimed)
        if answer is not None:
            if answer["status"] == "reused":
                cleanup()
            return answer
        claimed = records.take_over(table, request, claimed.row)
    if claimed.status != "owned":
        log.info(
            "analysis.%s tag=%s owner=%s task=%s",
            "shared" if claimed.status == "reused" else "pending",
            tag,
            claimed.row.get("owner"),
            claimed.task_id,
        )
        if claimed.status == "reused":
            cleanup()
        return claimed.answer()
    if claimed.task_id:
        cleanup()
        log.info("analysis.reused tag=%s task=%s", tag, claimed.task_id)
        return {"status": "submitted", "task_id": claimed.task_id, "reused": True}

    if claimed.row.get("submitting"):
        # A POST may have reached the sandbox before this activity was cut
        # off: only the sandbox history can tell.
        existing = clients.anyrun().find_task_by_tag(tag)
        if existing:
            records.record_task(table, claimed, request, existing)
            cleanup()
            log.info("analysis.reused tag=%s task=%s", tag, existing)
            return {"status": "submitted", "task_id": existing, "reused": True}

    limit = slot_limit()
    deadline = request.now + timedelta(seconds=request.timeout + request.margin)
    slot = None
    if limit is not None:
        slot = records.acquire_slot(table, request.owner, limit, request.now, deadline)
        if slot.index is None:
            log.info(
                "analysis.no_slot tag=%s in_use=%d limit=%d", tag, slot.in_use, limit
            )
            return {
                "status": "no_slot",
                "reason": f"all {limit} sandbox slots are in use",
                "retry_at": slot.retry_at.isoformat() if slot.retry_at else None,
            }

    if not records.mark_submitting(table, claimed):
        raise records.RecordConflict(f"the claim on {request.key} was taken over")
    try:
        task_id, reused = _send_or_find(tag, send, cleanup)
    except NotSubmitted as stop:
        _undo(table, claimed, request, keep_claim=stop.keep_claim)
        raise
    except errors.QuotaExceededError:
        _undo(table, claimed, request, keep_claim=True)
        raise
    except (errors.RejectedError, errors.AuthenticationError):
        _undo(table, claimed, request, keep_claim=False)
        raise

    records.record_task(table, claimed, request, task_id)
    answer = {"status": "submitted", "task_id": task_id, "reused": reused}
    if slot is not None:
        expected_end = request.now + timedelta(seconds=request.timeout)
        records.attach_task(table, slot.index, request.owner, task_id, expected_end)
        answer["slot"] = slot.index
    _log_sent(tag, task_id, reused)
    return answer


def in_flight_seconds() -> float:
    """Wall seconds after which a POST flagged in a record can no longer land."""
    return 2 * current().http_timeout_seconds + 30


def _confirm_other(
    table, request: records.RecordRequest, claimed: records.Claim
) -> dict[str, Any] | None:
    """Ask the sandbox about another owner's unconfirmed record.

    Returns the activity result (the task reused, or the claim still pending),
    or None when the record is for no live task and may be taken over.
    """
    row = claimed.row
    owner = str(row.get("owner"))
    sandbox = clients.anyrun()
    task_id = row.get("task_id")
    if not task_id:
        if records.in_flight(row, in_flight_seconds()):
            return records.Claim("pending", row).answer()
        task_id = sandbox.find_task_by_tag(idempotency_tag(owner))
        if not task_id:
            return None
    try:
        status = sandbox.get_status(task_id)
    except errors.NotFoundError:
        return None
    if status["state"] == "failed":
        return None
    entity = records.confirm_task(
        table,
        row,
        request,
        task_id,
        done=status["state"] == "done",
        remaining=int(status.get("remaining") or 0),
    )
    log.info(
        "analysis.confirmed key=%s owner=%s task=%s state=%s",
        request.key,
        owner,
        task_id,
        status["state"],
    )
    return records.Claim("reused", entity).answer()


def settle_and_find(tag: str, exc: errors.ConnectorError) -> str | None:
    """After a POST whose outcome is unknown, wait, then look its tag up.

    A timed-out or reset submission, or a 5xx from a gateway, may still have
    created a task, even after the client gave up. Waiting one client timeout
    gives such a request time to land, so that the lookup finds its task and
    the activity's retry does not pay for a second one.
    """
    settle = current().http_timeout_seconds
    log.warning("analysis.outcome_unknown tag=%s wait=%.0fs error=%s", tag, settle, exc)
    time.sleep(settle)
    try:
        return clients.anyrun().find_task_by_tag(tag)
    except errors.ConnectorError as lookup_error:
        log.warning("analysis.lookup_failed tag=%s error=%s", tag, lookup_error)
        return None


def _undo(table, claimed, request, *, keep_claim: bool) -> None:
    """Give back the slot, and the claim unless it is kept for a retry."""
    records.release_slot(table, request.owner)
    if keep_claim:
        records.clear_submitting(table, claimed)
    else:
        records.drop_claim(table, request.key, request.owner)
