"""A small builder of Durable 1.x orchestration histories for replay tests.

It writes the JSON the Functions host sends (PascalCase history events with
integer event types, schema versions V2/V3) and runs an orchestrator through
the real SDK's `Orchestrator.handle`, returning the decoded state.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

# HistoryEventType values of azure-functions-durable 1.x.
EXECUTION_STARTED = 0
TASK_SCHEDULED = 4
TASK_COMPLETED = 5
TASK_FAILED = 6
SUB_ORCHESTRATION_CREATED = 7
SUB_ORCHESTRATION_COMPLETED = 8
SUB_ORCHESTRATION_FAILED = 9
TIMER_CREATED = 10
TIMER_FIRED = 11
ORCHESTRATOR_STARTED = 12
ORCHESTRATOR_COMPLETED = 13
EVENT_RAISED = 15

# ActionType values in the orchestrator's answer.
CALL_ACTIVITY = 0
CALL_ACTIVITY_WITH_RETRY = 1
CALL_SUB_ORCHESTRATOR = 2
CONTINUE_AS_NEW = 4
CREATE_TIMER = 5
WHEN_ALL = 12

START = datetime(2026, 11, 30, 8, 0, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class History:
    """Events of one orchestration execution, appended episode by episode."""

    def __init__(
        self, name: str, input_: Any, instance_id: str = "inc-test", start=START
    ):
        self.name = name
        self.input = input_
        self.instance_id = instance_id
        self.now = start
        self.events: list[dict[str, Any]] = []
        self._add(ORCHESTRATOR_STARTED)
        self._add(
            EXECUTION_STARTED,
            Name=name,
            Input=json.dumps(input_),
            Version="",
            OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": "e1"},
        )

    def _add(self, event_type: int, event_id: int = -1, **fields: Any) -> History:
        self.events.append(
            {
                "EventType": event_type,
                "EventId": event_id,
                "IsPlayed": False,
                "Timestamp": iso(self.now),
                **fields,
            }
        )
        return self

    def episode(self, seconds: float = 1.0) -> History:
        """Close the current episode and open the next one `seconds` later."""
        self._add(ORCHESTRATOR_COMPLETED)
        self.now += timedelta(seconds=seconds)
        return self._add(ORCHESTRATOR_STARTED)

    def activity(
        self, seq: int, name: str, result: Any, seconds: float = 1.0
    ) -> History:
        """Record an activity scheduled in this episode and completed in the next."""
        self._add(TASK_SCHEDULED, seq, Name=name)
        self.episode(seconds)
        return self._add(TASK_COMPLETED, TaskScheduledId=seq, Result=json.dumps(result))

    def activity_failed(
        self, seq: int, name: str, reason: str, seconds: float = 1.0
    ) -> History:
        self._add(TASK_SCHEDULED, seq, Name=name)
        self.episode(seconds)
        return self._add(
            TASK_FAILED, TaskScheduledId=seq, Reason=reason, Details="Exception"
        )

    def timer(self, seq: int, fire_at: datetime) -> History:
        """Record a timer created in this episode that fires in the next."""
        self._add(TIMER_CREATED, seq, FireAt=iso(fire_at))
        self.episode(max(0.0, (fire_at - self.now).total_seconds()))
        return self._add(TIMER_FIRED, TimerId=seq, FireAt=iso(fire_at))

    def retry_timer(self, seq: int, seconds: float) -> History:
        """Record the host's retry timer after a failed attempt (DTFx semantics)."""
        return self.timer(seq, self.now + timedelta(seconds=seconds))

    def sub_orchestration(self, seq: int, name: str, instance_id: str) -> History:
        return self._add(
            SUB_ORCHESTRATION_CREATED, seq, Name=name, InstanceId=instance_id
        )

    def sub_completed(self, seq: int, result: Any) -> History:
        return self._add(
            SUB_ORCHESTRATION_COMPLETED, TaskScheduledId=seq, Result=json.dumps(result)
        )

    def sub_failed(self, seq: int, reason: str) -> History:
        return self._add(
            SUB_ORCHESTRATION_FAILED, TaskScheduledId=seq, Reason=reason, Details="x"
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "history": self.events,
                "input": json.dumps(self.input),
                "instanceId": self.instance_id,
                "isReplaying": False,
                "parentInstanceId": None,
                "upperSchemaVersion": 1,
                "upperSchemaVersionNew": 2,
                "longRunningTimerIntervalDuration": "3.00:00:00",
                "maximumShortTimerDuration": "6.00:00:00",
            }
        )


def replay(orchestrator, history: History) -> dict[str, Any]:
    """Run an orchestrator (its decorated builder) over a history; return the state."""
    handle = orchestrator.build().get_user_function()
    try:
        return json.loads(handle(history.to_json()))
    except Exception as exc:
        text = str(exc)
        marker = "$OutOfProcData$:"
        if marker in text:
            return json.loads(text.split(marker, 1)[1])
        raise


def flat_actions(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten the V2 action list, expanding compound actions and retry wrappers."""
    out: list[dict[str, Any]] = []

    def walk(action: dict[str, Any]) -> None:
        if action.get("compoundActions"):
            for child in action["compoundActions"]:
                walk(child)
        else:
            out.append(action)

    for group in state.get("actions") or []:
        for action in group:
            walk(action)
    return out


def last_action(state: dict[str, Any]) -> dict[str, Any]:
    return flat_actions(state)[-1]


def action_input(action: dict[str, Any]) -> Any:
    return json.loads(action["input"])
