"""Sub-orchestration for one file seen on an endpoint.

0. Claim the file's analysis record (by SHA-256 and OS), so that a file
   another incident analysed within the reuse window, or is fetching now, is
   followed instead of fetched again.
1. Resolve the Defender device, its OS and the file's path (advanced hunting
   when the entity has no directory).
2. Make sure the upload script is in the Live Response library.
3. Start the script through `runliveresponse` with a per-blob SAS URL that
   expires with the upload deadline. A device busy with another Live
   Response session (`ActiveRequestAlreadyExists`) or a 429 is waited out on
   a durable timer.
4. Wait for whichever comes first: the blob-created event, a failed machine
   action, or the upload deadline (then the action is cancelled and the
   result reports that the device never delivered the file). An action that
   failed with the script's `upload_failed` (storage unreachable, a 5xx that
   outlasted the script's own retries) is requested once more a minute later.
5. Verify the blob's SHA-256, stream it to the sandbox, delete it, and wait
   for the report as URL analyses do.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from enrichment.uploads import UPLOAD_EVENT
from orchestrators.sandbox import (
    ACTIVITY_RETRY,
    at,
    failure_reason,
    follow_task,
    not_submitted,
    record_request,
    result,
    start_waiting,
    submit,
)

bp = df.Blueprint()

DEVICE_BUSY_WAIT_SECONDS = 60
FIRST_ACTION_CHECK_SECONDS = 30
MAX_ACTION_CHECK_SECONDS = 300
FAILED_ACTION_STATES = ("Failed", "TimeOut", "Cancelled")
# Live Response requests per file when the script reports upload_failed, and
# the seconds between them.
UPLOAD_REQUESTS = 2
UPLOAD_RETRY_WAIT_SECONDS = 60


class FileStepFailed(Exception):
    """A step ended the analysis; `status` and `reason` go into the result."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class UploadFailed(FileStepFailed):
    """The script could not write to Blob Storage; another request may work."""


def _call(context, name: str, payload: dict[str, Any]):
    try:
        return (yield context.call_activity_with_retry(name, ACTIVITY_RETRY, payload))
    except Exception as exc:  # noqa: BLE001 - 1.x surfaces activity errors as Exception
        raise FileStepFailed(
            "failed", f"{name} failed: {failure_reason(exc)}"
        ) from None


def _resolve(context, job: dict[str, Any]):
    context.set_custom_status({"state": "locating_file"})
    file = job["file"]
    source = yield from _call(context, "resolve_file_source", file)
    if source["status"] != "ok":
        raise FileStepFailed("unavailable", source["reason"])
    return source


def _request_upload(context, job: dict[str, Any]):
    """Start the upload script; wait out a busy device or a 429 until the deadline."""
    state = job["state"]
    source = state["source"]
    library = yield from _call(
        context, "ensure_live_response_script", {"os": source["os"]}
    )
    if library["status"] != "ok":
        raise FileStepFailed("failed", library["reason"])
    minutes = job["options"]["upload_deadline_minutes"]
    state["upload_deadline"] = (
        context.current_utc_datetime + timedelta(minutes=minutes)
    ).isoformat()

    payload = {
        "device_id": source["device_id"],
        "script": library["script"],
        "path": source["path"],
        "sha256": source["sha256"],
        "sha1": source.get("sha1"),
        "instance_id": context.instance_id,
        "expires_at": state["upload_deadline"],
    }
    while True:
        context.set_custom_status(
            {"state": "requesting_upload", "device": source["host"]}
        )
        answer = yield from _call(context, "request_file_upload", payload)
        if answer["status"] == "requested":
            return answer
        now = context.current_utc_datetime
        deadline = at(state["upload_deadline"])
        if answer["status"] not in ("busy", "throttled") or now >= deadline:
            raise FileStepFailed("failed", f"Live Response: {answer.get('reason')}")
        wait = max(float(answer.get("retry_after") or 0), DEVICE_BUSY_WAIT_SECONDS)
        wake = min(now + timedelta(seconds=wait), deadline)
        context.set_custom_status(
            {
                "state": "waiting_for_device",
                "reason": answer.get("reason"),
                "next_check_at": wake.isoformat(),
            }
        )
        yield context.create_timer(wake)


def _script_reason(check: dict[str, Any]) -> str:
    script = check.get("script") or {}
    detail = (
        script.get("message") or script.get("reason") or "no output from the script"
    )
    code = f" ({script['reason']})" if script.get("reason") else ""
    return f"the Live Response action ended {check.get('state')}: {detail}{code}"


def _wait_for_upload(context, job: dict[str, Any]):
    """Wait for the blob event, a failed machine action or the deadline."""
    state = job["state"]
    deadline = at(state["upload_deadline"])
    uploaded = context.wait_for_external_event(UPLOAD_EVENT)
    interval = FIRST_ACTION_CHECK_SECONDS
    succeeded_checks = 0

    while True:
        now = context.current_utc_datetime
        wake = min(now + timedelta(seconds=interval), deadline)
        context.set_custom_status(
            {
                "state": "waiting_for_upload",
                "device": state["source"]["host"],
                "action_id": state["action_id"],
                "deadline": state["upload_deadline"],
            }
        )
        timer = context.create_timer(wake)
        winner = yield context.task_any([uploaded, timer])
        if winner == uploaded:
            if not timer.is_completed:
                timer.cancel()
            return uploaded.result

        check = yield from _call(
            context,
            "check_upload_action",
            {"action_id": state["action_id"], "blob": state["blob"]},
        )
        if check.get("blob_exists"):
            # The blob is there but its event never came: carry on without it.
            return {"blob": state["blob"], "size": check.get("size"), "sha256": None}
        if check["state"] in FAILED_ACTION_STATES:
            if (check.get("script") or {}).get("reason") == "upload_failed":
                raise UploadFailed("failed", _script_reason(check))
            raise FileStepFailed("failed", _script_reason(check))
        if check["state"] == "Succeeded":
            succeeded_checks += 1
            if succeeded_checks >= 2:
                raise FileStepFailed(
                    "failed",
                    _script_reason(check)
                    + "; the blob is not in the upload container (check that Defender "
                    "for Storage does not delete uploads)",
                )
        if context.current_utc_datetime >= deadline:
            yield from _call(
                context,
                "cancel_upload_action",
                {
                    "action_id": state["action_id"],
                    "comment": "ANY.RUN connector: upload deadline passed",
                },
            )
            raise FileStepFailed(
                "timed_out",
                f"the device did not upload the file by {state['upload_deadline']} "
                f"(action {check['state']}); the Live Response action was cancelled",
            )
        interval = min(interval * 2, MAX_ACTION_CHECK_SECONDS)


def _reserve(context, job: dict[str, Any], sha256: str, os_name: str):
    """Claim the file's analysis record before fetching it.

    Returns None when this sub-orchestration owns the record (or there is no
    table) and must fetch the file, else the activity's result: another
    incident's task ("reused") or a claim that did not free up in time.
    """
    state = job["state"]
    record = _record(context, job, sha256, os_name)
    if record is None:
        state["reserved"] = True
        return None
    state["record_key"] = record["key"]
    answer = yield from submit(context, job, "reserve_analysis", {"record": record})
    if answer is not None and answer["status"] == "owned":
        state["reserved"] = True
        # The submission after the fetch gets a deadline of its own.
        state.pop("submit_deadline", None)
        state.pop("pending_checks", None)
        return None
    return answer or {"status": "continued"}


def _record(context, job: dict[str, Any], sha256: str, os_name: str):
    file_options = job["options"]["file_options"][os_name]
    upload_seconds = job["options"]["upload_deadline_minutes"] * 60
    return record_request(
        context, job, sha256, file_options, claim_seconds=upload_seconds
    )


def _release(context, job: dict[str, Any]):
    """Give up the claim of a file that was never submitted, so others may fetch it."""
    state = job["state"]
    if not state.get("record_key") or state.get("task_id"):
        return
    try:
        yield context.call_activity(
            "release_analysis",
            {"key": state["record_key"], "owner": context.instance_id},
        )
    except Exception:  # noqa: BLE001 - the claim goes stale at its deadline anyway
        return


def _fetch_and_submit(context, job: dict[str, Any]):
    """Reserve, locate, fetch and submit the file; return the submit result."""
    state = job["state"]
    file = job["file"]
    early_os = file.get("os_family")
    if "reserved" not in state and file.get("sha256") and early_os:
        answer = yield from _reserve(context, job, file["sha256"], early_os)
        if answer is not None:
            return answer
    if "source" not in state:
        state["source"] = yield from _resolve(context, job)
    source = state["source"]
    if "reserved" not in state:
        answer = yield from _reserve(context, job, source["sha256"], source["os"])
        if answer is not None:
            return answer
    while "uploaded" not in state:
        if "action_id" not in state:
            requested = yield from _request_upload(context, job)
            state["action_id"] = requested["action_id"]
            state["blob"] = requested["blob"]
            state["upload_requests"] = state.get("upload_requests", 0) + 1
        try:
            state["uploaded"] = yield from _wait_for_upload(context, job)
        except UploadFailed as failure:
            if state.get("upload_requests", 1) >= UPLOAD_REQUESTS:
                raise
            del state["action_id"]
            wake = context.current_utc_datetime + timedelta(
                seconds=UPLOAD_RETRY_WAIT_SECONDS
            )
            context.set_custom_status(
                {
                    "state": "waiting_for_device",
                    "reason": failure.reason,
                    "next_check_at": wake.isoformat(),
                }
            )
            yield context.create_timer(wake)

    file_options = job["options"]["file_options"][source["os"]]
    answer = yield from submit(
        context,
        job,
        "submit_file_analysis",
        {
            "blob": state["blob"],
            "sha256": source["sha256"],
            "file_name": file["file_name"],
            "options": file_options,
            "record": _record(context, job, source["sha256"], source["os"]),
        },
    )
    return answer or {"status": "continued"}


@bp.orchestration_trigger(context_name="context", orchestration="analyze_file")
def analyze_file(context: df.DurableOrchestrationContext):
    job = context.get_input()
    job.setdefault("kind", "file")
    state = job.setdefault("state", {})
    options = job["options"]

    if not options.get("files_enabled"):
        return result(
            job,
            "unavailable",
            reason="file analysis is off (UPLOAD_BLOB_ENDPOINT is not set)",
        )

    if "task_id" not in state:
        try:
            answer = yield from _fetch_and_submit(context, job)
        except FileStepFailed as failure:
            yield from _release(context, job)
            return result(
                job,
                failure.status,
                reason=failure.reason,
                host=(state.get("source") or {}).get("host"),
            )
        except Exception as exc:  # noqa: BLE001
            return result(
                job, "failed", reason=f"submission failed: {failure_reason(exc)}"
            )
        if answer["status"] == "continued":
            return None
        if answer["status"] not in ("submitted", "reused"):
            if state.get("uploaded") and answer["status"] != "hash_mismatch":
                # The file came but will not be analysed (sandbox quota or
                # slots until the deadline), so its blob goes now, not a day
                # later. On a hash mismatch the submission deleted it already.
                try:
                    yield context.call_activity_with_retry(
                        "discard_upload", ACTIVITY_RETRY, {"blob": state["blob"]}
                    )
                except Exception:  # noqa: BLE001, S110 - the lifecycle rule removes it later
                    pass
            return not_submitted(job, answer)
        os_name = (state.get("source") or {}).get("os") or job["file"]["os_family"]
        timeout = int(options["file_options"][os_name]["opt_timeout"])
        record = None
        if state.get("record_key") and answer["status"] == "submitted":
            record = {"key": state["record_key"]}
        start_waiting(context, job, answer, timeout, record)

    outcome = yield from follow_task(context, job)
    if outcome is not None:
        source = state.get("source") or {}
        outcome.update(
            host=source.get("host") or job["file"].get("host_name"),
            sha256=source.get("sha256") or job["file"].get("sha256"),
        )
    return outcome
