"""JSON shapes of the Durable Functions 1.x out-of-process protocol.

The host sends the orchestrator a context JSON with the whole history, and the
orchestrator returns a state JSON with the actions it wants. Field names and
numbers follow DurableTask.Core and `azure-functions-durable` 1.7.0
(`models/history/HistoryEventType.py`, `models/actions/ActionType.py`,
`models/OrchestratorState.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

# The host's SchemaVersion enum is Original=0, V2=1, V3=2. It sends V2 in
# upperSchemaVersion and V3 in upperSchemaVersionNew, because SDK 1.1.x only
# knew V2.
UPPER_SCHEMA_VERSION = 1
UPPER_SCHEMA_VERSION_NEW = 2

# Values the host sends for the Azure Storage backend, as .NET
# TimeSpan.ToString("c"). The SDK splits a timer further away than the maximum
# into pieces of the interval.
MAXIMUM_SHORT_TIMER_DURATION = "6.00:00:00"
LONG_RUNNING_TIMER_INTERVAL_DURATION = "3.00:00:00"
DEFAULT_HTTP_ASYNC_SLEEP_MS = 30000

OUT_OF_PROC_DATA_MARKER = "$OutOfProcData$:"


class EventType(IntEnum):
    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    SUB_ORCHESTRATION_INSTANCE_CREATED = 7
    SUB_ORCHESTRATION_INSTANCE_COMPLETED = 8
    SUB_ORCHESTRATION_INSTANCE_FAILED = 9
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_SENT = 14
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16
    GENERIC_EVENT = 17
    HISTORY_STATE = 18
    EXECUTION_SUSPENDED = 19
    EXECUTION_RESUMED = 20


# PascalCase names as DurableTask.Core spells them (used in the HTTP API).
EVENT_TYPE_NAMES = {
    EventType.EXECUTION_STARTED: "ExecutionStarted",
    EventType.EXECUTION_COMPLETED: "ExecutionCompleted",
    EventType.EXECUTION_FAILED: "ExecutionFailed",
    EventType.EXECUTION_TERMINATED: "ExecutionTerminated",
    EventType.TASK_SCHEDULED: "TaskScheduled",
    EventType.TASK_COMPLETED: "TaskCompleted",
    EventType.TASK_FAILED: "TaskFailed",
    EventType.SUB_ORCHESTRATION_INSTANCE_CREATED: "SubOrchestrationInstanceCreated",
    EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED: "SubOrchestrationInstanceCompleted",
    EventType.SUB_ORCHESTRATION_INSTANCE_FAILED: "SubOrchestrationInstanceFailed",
    EventType.TIMER_CREATED: "TimerCreated",
    EventType.TIMER_FIRED: "TimerFired",
    EventType.ORCHESTRATOR_STARTED: "OrchestratorStarted",
    EventType.ORCHESTRATOR_COMPLETED: "OrchestratorCompleted",
    EventType.EVENT_SENT: "EventSent",
    EventType.EVENT_RAISED: "EventRaised",
    EventType.CONTINUE_AS_NEW: "ContinueAsNew",
    EventType.GENERIC_EVENT: "GenericEvent",
    EventType.HISTORY_STATE: "HistoryState",
    EventType.EXECUTION_SUSPENDED: "ExecutionSuspended",
    EventType.EXECUTION_RESUMED: "ExecutionResumed",
}


class ActionType(IntEnum):
    CALL_ACTIVITY = 0
    CALL_ACTIVITY_WITH_RETRY = 1
    CALL_SUB_ORCHESTRATOR = 2
    CALL_SUB_ORCHESTRATOR_WITH_RETRY = 3
    CONTINUE_AS_NEW = 4
    CREATE_TIMER = 5
    WAIT_FOR_EXTERNAL_EVENT = 6
    CALL_ENTITY = 7
    CALL_HTTP = 8
    SIGNAL_ENTITY = 9
    SCHEDULED_SIGNAL_ENTITY = 10
    WHEN_ANY = 11
    WHEN_ALL = 12


def format_timestamp(moment: datetime) -> str:
    """Format an aware datetime as the UTC ISO string the host uses (ends in Z)."""
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO timestamp; a value without offset is taken as UTC."""
    cleaned = text.strip()
    if cleaned.endswith("Z"):
        cleaned = cleaned[:-1] + "+00:00"
    moment = datetime.fromisoformat(cleaned)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def new_event(event_type: EventType, timestamp: datetime, **fields: Any) -> dict:
    """Build a history event dict; EventId is -1 unless the caller sets it."""
    event = {
        "EventType": int(event_type),
        "EventId": -1,
        "IsPlayed": False,
        "Timestamp": format_timestamp(timestamp),
    }
    event.update(fields)
    return event


def execution_started_event(
    timestamp: datetime,
    *,
    name: str,
    instance_id: str,
    execution_id: str,
    input_json: str | None,
    version: str,
    parent: dict | None = None,
) -> dict:
    """Build ExecutionStarted; 1.7.0 reads `Version` and fails if it is missing."""
    return new_event(
        EventType.EXECUTION_STARTED,
        timestamp,
        Name=name,
        Input=input_json,
        Version=version,
        OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
        ParentInstance=parent,
        Tags=None,
    )


def build_context_json(
    *,
    instance_id: str,
    parent_instance_id: str | None,
    input_json: str | None,
    past_events: list[dict],
    new_events: list[dict],
) -> str:
    """Build the orchestration trigger payload the host sends for one episode.

    Events of earlier episodes go with IsPlayed true, the episode's own
    OrchestratorStarted and new event with IsPlayed false.
    """
    history = [dict(event, IsPlayed=True) for event in past_events]
    history.extend(dict(event, IsPlayed=False) for event in new_events)
    context = {
        "history": history,
        "instanceId": instance_id,
        "isReplaying": bool(past_events),
        "parentInstanceId": parent_instance_id,
        "input": input_json,
        "upperSchemaVersion": UPPER_SCHEMA_VERSION,
        "upperSchemaVersionNew": UPPER_SCHEMA_VERSION_NEW,
        "longRunningTimerIntervalDuration": LONG_RUNNING_TIMER_INTERVAL_DURATION,
        "maximumShortTimerDuration": MAXIMUM_SHORT_TIMER_DURATION,
        "defaultHttpAsyncRequestSleepTimeMillseconds": DEFAULT_HTTP_ASYNC_SLEEP_MS,
    }
    return json.dumps(context)


class ProtocolError(Exception):
    """Orchestrator output that the host cannot decode."""


@dataclass
class OrchestratorResult:
    """Decoded state JSON of one orchestrator episode.

    `error` is set when the orchestrator raised. `details` then contains the
    traceback of the user code when the worker had one.
    """

    is_done: bool
    actions: list[dict]
    output: Any = None
    has_output: bool = False
    custom_status: Any = None
    has_custom_status: bool = False
    error: str | None = None
    details: str = ""
    schema_version: int = 0
    raw: dict = field(default_factory=dict)


def parse_orchestrator_state(state_json: str) -> OrchestratorResult:
    """Decode the state JSON the orchestrator function returned.

    Replay schemas V2 and V3 send one inner action list with every action
    scheduled so far. V1 (one list per yield) is rejected, because this host
    always offers V3.
    """
    try:
        state = json.loads(state_json)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"orchestrator state is not valid JSON: {exc}") from exc
    if not isinstance(state, dict):
        raise ProtocolError("orchestrator state is not a JSON object")

    schema_version = state.get("schemaVersion", 0)
    if schema_version < UPPER_SCHEMA_VERSION:
        raise ProtocolError(
            "orchestrator state uses replay schema V1; devhost needs V2 or later "
            "(azure-functions-durable >= 1.1.0)"
        )
    action_lists = state.get("actions") or [[]]
    if len(action_lists) != 1:
        raise ProtocolError(
            f"orchestrator state has {len(action_lists)} action lists; schema "
            f"{schema_version} must have exactly one"
        )

    return OrchestratorResult(
        is_done=bool(state.get("isDone")),
        actions=list(action_lists[0]),
        output=state.get("output"),
        has_output="output" in state,
        custom_status=state.get("customStatus"),
        has_custom_status="customStatus" in state,
        error=state.get("error"),
        schema_version=schema_version,
        raw=state,
    )


def parse_orchestrator_exception(message: str) -> OrchestratorResult | None:
    """Decode the `$OutOfProcData$:` state that 1.x appends to an orchestrator error.

    Returns None when the message carries no state (an error outside user code).
    """
    _, marker, state_json = message.partition(OUT_OF_PROC_DATA_MARKER)
    if not marker:
        return None
    result = parse_orchestrator_state(state_json)
    if not result.error:
        result.error = message.partition("\n\n" + OUT_OF_PROC_DATA_MARKER)[0]
    return result


def retry_interval(action: dict) -> timedelta:
    options = action.get("retryOptions") or {}
    return timedelta(
        milliseconds=int(options.get("firstRetryIntervalInMilliseconds", 0))
    )


def retry_max_attempts(action: dict) -> int:
    options = action.get("retryOptions") or {}
    return int(options.get("maxNumberOfAttempts", 1))
