"""Steps shared by the URL and file sub-orchestrations: submit, wait, report.

The first status check is scheduled for when the analysis should end (its
opt_timeout); later checks follow the seconds the sandbox says remain. Every
wait is bounded by a deadline of opt_timeout plus a margin, and the deadline
outcome is a reported result. After a few checks the orchestration continues
as new, carrying its state in the input, so that its history stays small.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df

from enrichment.results import idempotency_tag

ACTIVITY_RETRY = df.RetryOptions(
    first_retry_interval_in_milliseconds=5_000, max_number_of_attempts=3
)
MAX_CHECKS_PER_EXECUTION = 6
# Seconds after the analysis timeout before the first check, for the sandbox
# to finish writing its report.
FIRST_CHECK_GRACE_SECONDS = 3
QUOTA_WAIT_SECONDS = 60
MAX_BACKOFF_FACTOR = 12
TASK_LINK = "https://app.any.run/tasks/{}"


def failure_reason(exc: BaseException) -> str:
    """Return the first line of an activity failure (1.x raises a plain Exception)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:500]


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def result(job: dict[str, Any], status: str, **fields: Any) -> dict[str, Any]:
    """Build the sub-orchestration's result for its object."""
    return {
        "key": job["key"],
        "kind": job["kind"],
        "object": job["object"],
        "status": status,
        **fields,
    }


def submit(
    context: df.DurableOrchestrationContext,
    job: dict[str, Any],
    activity: str,
    payload: dict[str, Any],
):
    """Call a submit activity; while the sandbox quota is full, wait and try again.

    The activity looks up the submission's tag first, so calling it again
    after a redelivery or a quota wait never pays for a second task.
    """
    options = job["options"]
    state = job.setdefault("state", {})
    now = context.current_utc_datetime
    state.setdefault(
        "submit_deadline",
        (now + timedelta(seconds=options["deadline_margin_seconds"])).isoformat(),
    )
    payload = {**payload, "tag": idempotency_tag(context.instance_id)}

    while True:
        context.set_custom_status({"state": "submitting"})
        answer = yield context.call_activity_with_retry(
            activity, ACTIVITY_RETRY, payload
        )
        if answer["status"] == "submitted":
            return answer
        now = context.current_utc_datetime
        if answer["status"] != "throttled" or now >= at(state["submit_deadline"]):
            return answer
        wait = max(float(answer.get("retry_after") or 0), QUOTA_WAIT_SECONDS)
        wake = min(now + timedelta(seconds=wait), at(state["submit_deadline"]))
        context.set_custom_status(
            {
                "state": "waiting_for_quota",
                "reason": answer.get("reason"),
                "next_check_at": wake.isoformat(),
            }
        )
        yield context.create_timer(wake)


def start_waiting(context, job: dict[str, Any], task_id: str, timeout: int) -> None:
    """Record a submitted task and schedule its first check at its timeout."""
    state = job["state"]
    now = context.current_utc_datetime
    margin = job["options"]["deadline_margin_seconds"]
    state["task_id"] = task_id
    state["task_url"] = TASK_LINK.format(task_id)
    state["deadline"] = (now + timedelta(seconds=timeout + margin)).isoformat()
    state["next_check_at"] = (
        now + timedelta(seconds=timeout + FIRST_CHECK_GRACE_SECONDS)
    ).isoformat()
    state["remaining"] = timeout
    state["zero_checks"] = 0


def _next_wait(state: dict[str, Any], remaining: int, minimum: int) -> int:
    if remaining > 0:
        state["zero_checks"] = 0
        return max(remaining, minimum)
    # The analysis time is over but the report is not ready: back off.
    state["zero_checks"] += 1
    return minimum * min(2 ** (state["zero_checks"] - 1), MAX_BACKOFF_FACTOR)


def follow_task(context: df.DurableOrchestrationContext, job: dict[str, Any]):
    """Wait for the submitted task on durable timers, then read its report.

    Returns the object's result, or None after continuing as new.
    """
    options = job["options"]
    state = job["state"]
    task = {"task_id": state["task_id"], "task_url": state["task_url"]}
    checks = 0

    while True:
        stage = "waiting" if state.get("checked") else "submitted"
        context.set_custom_status(
            {
                "state": stage,
                **task,
                "remaining": state["remaining"],
                "next_check_at": state["next_check_at"],
                "deadline": state["deadline"],
            }
        )
        yield context.create_timer(at(state["next_check_at"]))

        try:
            status = yield context.call_activity_with_retry(
                "check_analysis", ACTIVITY_RETRY, {"task_id": state["task_id"]}
            )
        except Exception as exc:  # noqa: BLE001 - 1.x surfaces activity errors as Exception
            return result(
                job,
                "failed",
                reason=f"status check failed: {failure_reason(exc)}",
                **task,
            )
        state["checked"] = True
        if status["state"] == "done":
            break
        if status["state"] == "failed":
            reason = status.get("reason") or "the sandbox task failed"
            return result(job, "failed", reason=reason, **task)

        now = context.current_utc_datetime
        deadline = at(state["deadline"])
        if now >= deadline:
            reason = f"no result by the deadline {state['deadline']}"
            return result(job, "timed_out", reason=reason, **task)
        remaining = int(status.get("remaining") or 0)
        wait = _next_wait(state, remaining, options["status_check_min_seconds"])
        state["remaining"] = remaining
        state["next_check_at"] = min(
            now + timedelta(seconds=wait), deadline
        ).isoformat()

        checks += 1
        if checks >= MAX_CHECKS_PER_EXECUTION:
            context.continue_as_new(job)
            return None

    context.set_custom_status({"state": "reading_report", **task})
    try:
        report = yield context.call_activity_with_retry(
            "fetch_analysis_report",
            ACTIVITY_RETRY,
            {
                "task_id": state["task_id"],
                "reputations": options["indicator_reputations"],
                "top_iocs": options["comment_top_iocs"],
            },
        )
    except Exception as exc:  # noqa: BLE001
        return result(
            job, "failed", reason=f"report failed: {failure_reason(exc)}", **task
        )
    status = report.pop("status", "done")
    return result(job, status, **{**task, **report})
