"""Steps shared by the URL and file sub-orchestrations: submit, wait, report.

The submit activities claim the object's analysis record first, so an
object that another incident analysed within the reuse window, or is
submitting now, is followed instead of submitted again, and a sandbox slot is
taken before each submission. The first status check is made shortly before
the analysis should end (its opt_timeout) and follows the monitor stream until
the task ends. Later checks follow the seconds the sandbox reports as left.
For benchmarks, STATUS_WAIT_POLICY picks a fixed-interval or polling baseline
instead. Every wait is bounded by a deadline of opt_timeout plus a margin,
and the deadline outcome is a reported result.
After a few checks or waits the orchestration continues as new, carrying its
state in the input, so that its history stays small.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df

from enrichment.records import record_key, submission_key
from enrichment.results import idempotency_tag

# A failed activity runs again 10 s later, 5 times in all. A paid submission
# gets no retry inside the client after a request that may have taken effect,
# so these attempts are what carries it over a minute of faults.
ACTIVITY_RETRY = df.RetryOptions(
    first_retry_interval_in_milliseconds=10_000, max_number_of_attempts=5
)
MAX_CHECKS_PER_EXECUTION = 6
# Seconds before the analysis timeout at which the remaining-time policy makes
# its first check. The check follows the monitor stream until the task ends
# (check_analysis, `follow`), so the end is seen when it happens.
STREAM_LEAD_SECONDS = 5
QUOTA_WAIT_SECONDS = 60
MAX_BACKOFF_FACTOR = 12
# Baseline waiting policies for benchmarks (STATUS_WAIT_POLICY): "fixed" checks
# as ANY.RUN's own Sentinel playbooks do, "poll" every few seconds.
FIXED_FIRST_CHECK_SECONDS = 130
FIXED_INTERVAL_SECONDS = 60
POLL_INTERVAL_SECONDS = 10
# A finished task whose report still returns 404 is read again this many
# times, this many seconds apart, before the object is reported failed.
REPORT_ATTEMPTS = 6
REPORT_RETRY_SECONDS = 20
# Statuses of the submit activities that are waited out and tried again.
RETRY_STATUSES = ("pending", "no_slot", "throttled")
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


def record_request(
    context: df.DurableOrchestrationContext,
    job: dict[str, Any],
    value: str,
    analysis_options: dict[str, Any],
    *,
    claim_seconds: int = 0,
) -> dict[str, Any] | None:
    """Describe this sub-orchestration's analysis record for the submit activities.

    `value` is the normalised URL or the file's SHA-256. Returns None when no
    analysis table is configured.
    """
    options = job["options"]
    if not options.get("records_enabled"):
        return None
    window = int(options.get("reuse_window_hours") or 0)
    timeout = int(analysis_options["opt_timeout"])
    margin = int(options["deadline_margin_seconds"])
    if window > 0:
        key = record_key(job["kind"], value, analysis_options)
    else:
        key = submission_key(idempotency_tag(context.instance_id))
    return {
        "key": key,
        "owner": context.instance_id,
        "now": context.current_utc_datetime.isoformat(),
        # A claim without a task id is stale after the analysis deadline
        # (plus the upload deadline for files, which are fetched first).
        "stale_seconds": claim_seconds + timeout + margin,
        "window_hours": window,
        "timeout": timeout,
        "margin": margin,
        "object": value,
    }


def _backoff(state: dict[str, Any], counter: str, minimum: int) -> int:
    state[counter] = state.get(counter, 0) + 1
    return minimum * min(2 ** (state[counter] - 1), MAX_BACKOFF_FACTOR)


def _wait_before_retry(
    context, job: dict[str, Any], answer: dict[str, Any], deadline: datetime
) -> tuple[datetime, dict[str, Any]]:
    """Return when to call the submit activity again and the status meanwhile."""
    state = job["state"]
    now = context.current_utc_datetime
    minimum = job["options"]["status_check_min_seconds"]
    status = answer["status"]
    if status == "no_slot":
        retry_at = at(answer["retry_at"]) if answer.get("retry_at") else None
        wake = max(retry_at or now, now + timedelta(seconds=minimum))
        custom_state = "waiting_for_slot"
    elif status == "pending":
        wake = now + timedelta(seconds=_backoff(state, "pending_checks", minimum))
        custom_state = "waiting_for_analysis"
    else:
        wait = max(float(answer.get("retry_after") or 0), QUOTA_WAIT_SECONDS)
        wake = now + timedelta(seconds=wait)
        custom_state = "waiting_for_quota"
    wake = min(wake, deadline)
    return wake, {
        "state": custom_state,
        "reason": answer.get("reason"),
        "next_check_at": wake.isoformat(),
    }


def submit(
    context: df.DurableOrchestrationContext,
    job: dict[str, Any],
    activity: str,
    payload: dict[str, Any],
):
    """Call a submit (or reserve) activity until it submits, reuses or gives up.

    While another incident submits the same object ("pending"), no sandbox
    slot is free ("no_slot") or the quota is full ("throttled"), it waits on
    a durable timer and calls again, until the submission deadline. The
    activity claims its record or looks up the submission's tag first, so
    calling it again never pays for a second task. Returns the activity's
    last result, or None after continuing as new (the caller returns None too).
    """
    options = job["options"]
    state = job.setdefault("state", {})
    now = context.current_utc_datetime
    state.setdefault(
        "submit_deadline",
        (now + timedelta(seconds=options["deadline_margin_seconds"])).isoformat(),
    )
    deadline = at(state["submit_deadline"])
    payload = {**payload, "tag": idempotency_tag(context.instance_id)}
    waits = 0

    while True:
        context.set_custom_status({"state": "submitting"})
        if payload.get("record"):
            now_text = context.current_utc_datetime.isoformat()
            payload["record"] = {**payload["record"], "now": now_text}
        answer = yield context.call_activity_with_retry(
            activity, ACTIVITY_RETRY, payload
        )
        if answer["status"] not in RETRY_STATUSES:
            return answer
        if context.current_utc_datetime >= deadline:
            return answer
        wake, custom_status = _wait_before_retry(context, job, answer, deadline)
        context.set_custom_status(custom_status)
        yield context.create_timer(wake)
        waits += 1
        if waits >= MAX_CHECKS_PER_EXECUTION:
            context.continue_as_new(job)
            return None


def not_submitted(job: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """Build the result of a submission that ended without a task."""
    status = answer["status"]
    reason = answer.get("reason")
    deadline = job["state"]["submit_deadline"]
    if status == "pending":
        return result(
            job, "timed_out", reason=f"{reason}, and it did not start by {deadline}"
        )
    if status == "no_slot":
        return result(
            job,
            "throttled",
            reason=f"{reason} until the deadline {deadline}",
        )
    return result(
        job, "throttled" if status == "throttled" else "failed", reason=reason
    )


def _first_check(
    policy: str, now: datetime, started: datetime, timeout: int
) -> datetime:
    if policy == "fixed":
        first = started + timedelta(seconds=FIXED_FIRST_CHECK_SECONDS)
    elif policy == "poll":
        first = now + timedelta(seconds=POLL_INTERVAL_SECONDS)
    else:
        first = started + timedelta(seconds=timeout - STREAM_LEAD_SECONDS)
    return max(first, now)


def start_waiting(
    context,
    job: dict[str, Any],
    answer: dict[str, Any],
    timeout: int,
    record: dict[str, Any] | None = None,
) -> None:
    """Record the task to follow and schedule its first check.

    With the remaining-time policy, a task this sub-orchestration submitted
    is first checked shortly before it should end, and so is another
    incident's task. The report of another incident's task is read at once
    when its owner has already seen it done. The owner's checks carry
    `release`, so that the check that reads the task's end frees the sandbox
    slot and updates the record.
    """
    state = job["state"]
    now = context.current_utc_datetime
    margin = job["options"]["deadline_margin_seconds"]
    policy = job["options"].get("wait_policy", "remaining")
    task_id = answer["task_id"]
    started = now
    if answer["status"] == "reused" and answer.get("expected_end"):
        started = min(now, at(answer["expected_end"]) - timedelta(seconds=timeout))
        state["shared_from"] = answer.get("owner")
        state["report_ready"] = bool(answer.get("done"))
    elif record is not None:
        state["release"] = {
            "key": record["key"],
            "owner": context.instance_id,
            "slot": answer.get("slot"),
        }
    state["task_id"] = task_id
    state["task_url"] = TASK_LINK.format(task_id)
    state["deadline"] = (
        max(now, started + timedelta(seconds=timeout)) + timedelta(seconds=margin)
    ).isoformat()
    state["next_check_at"] = _first_check(policy, now, started, timeout).isoformat()
    state["remaining"] = max(0, int((started - now).total_seconds()) + timeout)
    state["zero_checks"] = 0


def _next_wait(state: dict[str, Any], remaining: int, options: dict[str, Any]) -> int:
    policy = options.get("wait_policy", "remaining")
    if policy == "fixed":
        return FIXED_INTERVAL_SECONDS
    if policy == "poll":
        return POLL_INTERVAL_SECONDS
    minimum = options["status_check_min_seconds"]
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

    while not state.get("report_ready"):
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
            check = {"task_id": state["task_id"]}
            if options.get("wait_policy", "remaining") == "remaining":
                check["follow"] = True
            if state.get("release"):
                check["release"] = state["release"]
            status = yield context.call_activity_with_retry(
                "check_analysis", ACTIVITY_RETRY, check
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
        wait = _next_wait(state, remaining, options)
        state["remaining"] = remaining
        state["next_check_at"] = min(
            now + timedelta(seconds=wait), deadline
        ).isoformat()

        checks += 1
        if checks >= MAX_CHECKS_PER_EXECUTION:
            context.continue_as_new(job)
            return None

    request = {
        "task_id": state["task_id"],
        "reputations": options["indicator_reputations"],
        "top_iocs": options["comment_top_iocs"],
    }
    for attempt in range(1, REPORT_ATTEMPTS + 1):
        context.set_custom_status({"state": "reading_report", **task})
        try:
            report = yield context.call_activity_with_retry(
                "fetch_analysis_report", ACTIVITY_RETRY, request
            )
        except Exception as exc:  # noqa: BLE001
            return result(
                job, "failed", reason=f"report failed: {failure_reason(exc)}", **task
            )
        status = report.pop("status", "done")
        if status != "not_ready":
            return result(job, status, **{**task, **report})
        if attempt < REPORT_ATTEMPTS:
            wake = context.current_utc_datetime + timedelta(
                seconds=REPORT_RETRY_SECONDS
            )
            yield context.create_timer(wake)
    reason = (
        f"the sandbox still had no report after {REPORT_ATTEMPTS} attempts "
        f"{REPORT_RETRY_SECONDS} s apart: {report.get('reason')}"
    )
    return result(job, "failed", reason=reason, **task)
