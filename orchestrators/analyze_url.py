"""Sub-orchestration for one URL: submit or reuse, wait on timers, read the report."""

from __future__ import annotations

import azure.durable_functions as df

from orchestrators.sandbox import (
    ACTIVITY_RETRY,
    MAX_CHECKS_PER_EXECUTION,
    QUOTA_WAIT_SECONDS,
    STREAM_LEAD_SECONDS,
    failure_reason,
    follow_task,
    not_submitted,
    record_request,
    result,
    start_waiting,
    submit,
)

__all__ = [
    "ACTIVITY_RETRY",
    "STREAM_LEAD_SECONDS",
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
    timeout = int(url_options["opt_timeout"])

    if "task_id" not in state:
        record = record_request(context, job, job["object"], url_options)
        try:
            answer = yield from submit(
                context,
                job,
                "submit_url_analysis",
                {"url": job["object"], "options": url_options, "record": record},
            )
        except Exception as exc:  # noqa: BLE001 - 1.x surfaces activity errors as Exception
            return result(
                job, "failed", reason=f"submission failed: {failure_reason(exc)}"
            )
        if answer is None:
            return None
        if answer["status"] not in ("submitted", "reused"):
            return not_submitted(job, answer)
        start_waiting(context, job, answer, timeout, record)

    return (yield from follow_task(context, job))
