"""Per-object progress for the status API, read from a sub-orchestration's status."""

from __future__ import annotations

from typing import Any

# Custom-status states of analyze_file before its file reaches the sandbox.
FILE_FETCH_STEPS = (
    "locating_file",
    "requesting_upload",
    "waiting_for_device",
    "waiting_for_upload",
)


# Custom-status states of an analysis that waits before its submission, and
# what it waits for.
QUEUED_STATES = {
    "waiting_for_quota": "quota",
    "waiting_for_slot": "slot",
    "waiting_for_analysis": "analysis",
}


def object_progress(item: dict[str, Any], child) -> dict[str, Any]:
    """Describe one object's progress from its sub-orchestration status."""
    view = {"key": item["key"], "kind": item["kind"], "object": item["object"]}
    if child is None:
        return {**view, "state": "queued"}
    runtime = child.runtime_status.value
    if runtime == "Completed" and isinstance(child.output, dict):
        result = child.output
        if result.get("status") == "done":
            return {
                **view,
                "state": "done",
                "verdict": result.get("verdict"),
                "verdict_text": result.get("verdict_text"),
                "score": result.get("score"),
                "task_url": result.get("task_url"),
                "tags": result.get("tags", []),
            }
        return {
            **view,
            "state": "failed",
            "reason": result.get("reason") or result.get("status"),
            "task_url": result.get("task_url"),
        }
    if runtime in ("Failed", "Terminated", "Canceled"):
        return {**view, "state": "failed", "reason": f"analysis {runtime.lower()}"}
    custom = child.custom_status if isinstance(child.custom_status, dict) else {}
    state = custom.get("state")
    if state in ("submitted", "waiting"):
        return {
            **view,
            "state": state,
            "task_url": custom.get("task_url"),
            "seconds_left": custom.get("remaining"),
            "next_check_at": custom.get("next_check_at"),
        }
    if state == "reading_report":
        return {
            **view,
            "state": "waiting",
            "task_url": custom.get("task_url"),
            "seconds_left": 0,
        }
    if state in QUEUED_STATES:
        return {
            **view,
            "state": "queued",
            "reason": custom.get("reason"),
            "waiting_for": QUEUED_STATES[state],
            "next_check_at": custom.get("next_check_at"),
        }
    if state in FILE_FETCH_STEPS:
        fetching = {
            "step": state,
            "device": custom.get("device"),
            "action_id": custom.get("action_id"),
            "deadline": custom.get("deadline"),
            "reason": custom.get("reason"),
            "next_check_at": custom.get("next_check_at"),
        }
        present = {name: value for name, value in fetching.items() if value}
        return {**view, "state": "fetching", **present}
    return {**view, "state": "queued"}
