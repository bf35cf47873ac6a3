"""Sub-orchestration for one URL: submit, wait on durable timers, read the report.

The first check is scheduled for when the analysis should end (its
opt_timeout); later checks follow the seconds the sandbox says remain. Every
wait is bounded by a deadline of opt_timeout plus a margin, and the deadline
outcome is a reported result. After a few checks the orchestration continues
as new so that its history stays small.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df

from enrichment.results import idempotency_tag

bp = df.Blueprint()

ACTIVITY_RETRY = df.RetryOptions(
    first_retry_interval_in_milliseconds=5_000, max_number_of_attempts=3
)
MAX_CHECKS_PER_EXECUTION = 6
# Seconds after the analysis timeout before the first check, for the sandbox
# to finish writing its report.
FIRST_CHECK_GRACE_SECONDS = 3
QUOTA_WAIT_SECONDS = 60
MAX_BACKOFF_FACTOR = 12


def failure_reason(exc: BaseException) -> str:
    """Return the first line of an activity failure (1.x raises a plain Exception)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:500]


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _result(job: dict[str, Any], status: str, **fields: Any) -> dict[str, Any]:
    return {
        "key": job["key"],
        "kind": "url",
        "object": job["object"],
        "status": status,
        **fields,
    }


def _submit(context: df.DurableOrchestrationContext, job: dict[str, Any]):
    """Submit once (the activity reuses a task with our tag); wait out a full quota."""
    options = job["options"]
    url_options = options["url_options"]
    state = job.setdefault("state", {})
    now = context.current_utc_datetime
    state.setdefault(
        "submit_deadline",
        (now + timedelta(seconds=options["deadline_margin_seconds"])).isoformat(),
    )

    while True:
        context.set_custom_status({"state": "submitting"})
        answer = yield context.call_activity_with_retry(
            "submit_url_analysis",
            ACTIVITY_RETRY,
            {
                "url": job["object"],
                "options": url_options,
                "tag": idempotency_tag(context.instance_id),
            },
        )
        if answer["status"] == "submitted":
            return answer
        now = context.current_utc_datetime
        if answer["status"] != "throttled" or now >= _at(state["submit_deadline"]):
            return answer
        wait = max(float(answer.get("retry_after") or 0), QUOTA_WAIT_SECONDS)
        wake = min(now + timedelta(seconds=wait), _at(state["submit_deadline"]))
        context.set_custom_status(
            {
                "state": "waiting_for_quota",
                "reason": answer.get("reason"),
                "next_check_at": wake.isoformat(),
            }
        )
        yield context.create_timer(wake)


@bp.orchestration_trigger(context_name="context", orchestration="analyze_url")
def analyze_url(context: df.DurableOrchestrationContext):
    job = context.get_input()
    options = job["options"]
    state = job.setdefault("state", {})

    if "task_id" not in state:
        try:
            answer = yield from _submit(context, job)
        except Exception as exc:  # noqa: BLE001 - 1.x surfaces activity errors as Exception
            return _result(
                job, "failed", reason=f"submission failed: {failure_reason(exc)}"
            )
        if answer["status"] != "submitted":
            return _result(
                job,
                "failed" if answer["status"] == "rejected" else "throttled",
                reason=answer.get("reason"),
            )
        now = context.current_utc_datetime
        timeout = int(options["url_options"]["opt_timeout"])
        state["task_id"] = answer["task_id"]
        state["task_url"] = f"https://app.any.run/tasks/{answer['task_id']}"
        state["deadline"] = (
            now + timedelta(seconds=timeout + options["deadline_margin_seconds"])
        ).isoformat()
        state["next_check_at"] = (
            now + timedelta(seconds=timeout + FIRST_CHECK_GRACE_SECONDS)
        ).isoformat()
        state["remaining"] = timeout
        state["zero_checks"] = 0

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
        yield context.create_timer(_at(state["next_check_at"]))

        try:
            status = yield context.call_activity_with_retry(
                "check_analysis", ACTIVITY_RETRY, {"task_id": state["task_id"]}
            )
        except Exception as exc:  # noqa: BLE001
            return _result(
                job,
                "failed",
                reason=f"status check failed: {failure_reason(exc)}",
                **task,
            )
        state["checked"] = True
        if status["state"] == "done":
            break
        if status["state"] == "failed":
            return _result(
                job,
                "failed",
                reason=status.get("reason") or "the sandbox task failed",
                **task,
            )

        now = context.current_utc_datetime
        deadline = _at(state["deadline"])
        if now >= deadline:
            return _result(
                job,
                "timed_out",
                reason=f"no result by the deadline {state['deadline']}",
                **task,
            )
        remaining = int(status.get("remaining") or 0)
        if remaining > 0:
            state["zero_checks"] = 0
            wait = max(remaining, options["status_check_min_seconds"])
        else:
            # The analysis time is over but the report is not ready: back off.
            state["zero_checks"] += 1
            factor = min(2 ** (state["zero_checks"] - 1), MAX_BACKOFF_FACTOR)
            wait = options["status_check_min_seconds"] * factor
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
        return _result(
            job, "failed", reason=f"report failed: {failure_reason(exc)}", **task
        )
    status = report.pop("status", "done")
    return _result(job, status, **{**task, **report})
