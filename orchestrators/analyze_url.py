"""Sub-orchestration for one URL: submit, wait on durable timers, read the report."""

from __future__ import annotations

import azure.durable_functions as df

from orchestrators.sandbox import (
    ACTIVITY_RETRY,
    FIRST_CHECK_GRACE_SECONDS,
    MAX_CHECKS_PER_EXECUTION,
    QUOTA_WAIT_SECONDS,
    failure_reason,
    follow_task,
    result,
    start_waiting,
    submit,
)

__all__ = [
    "ACTIVITY_RETRY",
    "FIRST_CHECK_GRACE_SECONDS",
    "MAX_CHECKS_PER_EXECUTION",
    "QUOTA_WAIT_SECONDS",
    "analyze_url",
    "bp",
    "failure_reason",
]

bp = df.Blueprint()


@bp.orchestration_trigger(context_name="context", orchestration="analyze_url")
def analyze_url(context: df.DurableOrchestrationContext):
    job = context.get_input()
    job.setdefault("kind", "url")
    state = job.setdefault("state", {})
    url_options = job["options"]["url_options"]

    if "task_id" not in state:
        try:
            answer = yield from submit(
                context,
                job,
                "submit_url_analysis",
                {"url": job["object"], "options": url_options},
            )
        except Exception as exc:  # noqa: BLE001 - 1.x surfaces activity errors as Exception
            return result(
                job, "failed", reason=f"submission failed: {failure_reason(exc)}"
            )
        if answer["status"] != "submitted":
            status = "throttled" if answer["status"] == "throttled" else "failed"
            return result(job, status, reason=answer.get("reason"))
        start_waiting(context, job, answer["task_id"], int(url_options["opt_timeout"]))

    return (yield from follow_task(context, job))
