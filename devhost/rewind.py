"""Rewind plan for a failed instance.

The history is cut before the episode that delivered the first failed task.
What happened after the cut is turned back into work: results of tasks
scheduled before the cut and raised events are queued again, the failed
activities and still open timers run again, and sub-orchestrations are
reattached. The cut history is a prefix of whole episodes, so the
orchestrator replays a history that it produced before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .protocol import EventType

_FAILURES = {EventType.TASK_FAILED, EventType.SUB_ORCHESTRATION_INSTANCE_FAILED}
_COMPLETION_KEYS = {
    EventType.TASK_COMPLETED: "TaskScheduledId",
    EventType.TASK_FAILED: "TaskScheduledId",
    EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED: "TaskScheduledId",
    EventType.SUB_ORCHESTRATION_INSTANCE_FAILED: "TaskScheduledId",
    EventType.TIMER_FIRED: "TimerId",
}


@dataclass
class RewindPlan:
    history: list[dict]
    messages: list[dict] = field(default_factory=list)
    activities: list[tuple[int, str, str | None]] = field(default_factory=list)
    timers: list[tuple[int, str]] = field(default_factory=list)
    sub_orchestrations: list[tuple[int, str]] = field(default_factory=list)


def plan_rewind(history: list[dict]) -> RewindPlan | None:
    """Return the plan, or None when the history has no failed task."""
    failure_index = next(
        (i for i, e in enumerate(history) if e["EventType"] in _FAILURES), None
    )
    if failure_index is None:
        return None
    cut = max(
        i
        for i in range(failure_index + 1)
        if history[i]["EventType"] == EventType.ORCHESTRATOR_STARTED
    )
    kept = history[:cut]
    plan = RewindPlan(history=kept)

    open_tasks = _open_tasks(kept)
    for event in history[cut:]:
        event_type = event["EventType"]
        if event_type == EventType.EVENT_RAISED:
            plan.messages.append(dict(event, IsPlayed=False))
            continue
        key = _COMPLETION_KEYS.get(event_type)
        if key is None or event.get(key) not in open_tasks:
            continue
        if event_type in _FAILURES:
            continue
        open_tasks.pop(event[key])
        plan.messages.append(dict(event, IsPlayed=False))

    for sequence_id, scheduled in open_tasks.items():
        event_type = scheduled["EventType"]
        if event_type == EventType.TASK_SCHEDULED:
            plan.activities.append(
                (sequence_id, scheduled["Name"], scheduled.get("Input"))
            )
        elif event_type == EventType.TIMER_CREATED:
            plan.timers.append((sequence_id, scheduled["FireAt"]))
        else:
            plan.sub_orchestrations.append((sequence_id, scheduled["InstanceId"]))
    return plan


def _open_tasks(events: list[dict]) -> dict[int, dict]:
    scheduled: dict[int, dict] = {}
    for event in events:
        event_type = event["EventType"]
        if event_type in (
            EventType.TASK_SCHEDULED,
            EventType.TIMER_CREATED,
            EventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
        ):
            scheduled[event["EventId"]] = event
        key = _COMPLETION_KEYS.get(event_type)
        if key is not None:
            scheduled.pop(event.get(key), None)
    return scheduled
