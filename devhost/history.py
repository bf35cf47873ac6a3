"""History in the shape the Durable HTTP API returns with `showHistory=true`.

The API leaves out OrchestratorStarted/OrchestratorCompleted, folds each
TaskScheduled and SubOrchestrationInstanceCreated into its completion as
`FunctionName` and `ScheduledTime`, names event types with strings, and returns
inputs and results only with `showHistoryOutput=true`.
"""

from __future__ import annotations

import json
from typing import Any

from .protocol import EVENT_TYPE_NAMES, EventType

_HIDDEN = {EventType.ORCHESTRATOR_STARTED, EventType.ORCHESTRATOR_COMPLETED}
_SCHEDULING = {EventType.TASK_SCHEDULED, EventType.SUB_ORCHESTRATION_INSTANCE_CREATED}
_COMPLETIONS = {
    EventType.TASK_COMPLETED,
    EventType.TASK_FAILED,
    EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
    EventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
}
_FAILURES = {EventType.TASK_FAILED, EventType.SUB_ORCHESTRATION_INSTANCE_FAILED}


def history_for_api(events: list[dict], *, include_output: bool) -> list[dict]:
    scheduled: dict[int, dict] = {}
    result = []
    for event in events:
        event_type = EventType(event["EventType"])
        if event_type in _HIDDEN:
            continue
        if event_type in _SCHEDULING:
            scheduled[event["EventId"]] = event
            continue
        result.append(_api_event(event, event_type, scheduled, include_output))
    return result


def _api_event(
    event: dict, event_type: EventType, scheduled: dict[int, dict], include_output: bool
) -> dict:
    item: dict[str, Any] = {
        "EventType": EVENT_TYPE_NAMES[event_type],
        "Timestamp": event["Timestamp"],
    }
    if event_type == EventType.EXECUTION_STARTED:
        item["FunctionName"] = event.get("Name")
        if include_output:
            item["Input"] = _decode(event.get("Input"))
    elif event_type in _COMPLETIONS:
        origin = scheduled.get(event.get("TaskScheduledId"), {})
        item["FunctionName"] = origin.get("Name")
        item["ScheduledTime"] = origin.get("Timestamp")
        if event_type in _FAILURES:
            item["Reason"] = event.get("Reason")
            item["Details"] = event.get("Details")
        elif include_output:
            item["Result"] = _decode(event.get("Result"))
    elif event_type in (EventType.TIMER_CREATED, EventType.TIMER_FIRED):
        item["FireAt"] = event.get("FireAt")
        if event_type == EventType.TIMER_FIRED:
            item["TimerId"] = event.get("TimerId")
    elif event_type == EventType.EVENT_RAISED:
        item["Name"] = event.get("Name")
        if include_output:
            item["Input"] = _decode(event.get("Input"))
    elif event_type == EventType.EXECUTION_COMPLETED:
        item["OrchestrationStatus"] = event.get("OrchestrationStatus")
        if include_output:
            item["Result"] = _decode(event.get("Result"))
    elif event_type == EventType.EXECUTION_TERMINATED:
        item["Input"] = _decode(event.get("Input"))
    return item


def _decode(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
