"""Host side of replay: sequence ids, new work and non-determinism checks.

After each episode the orchestrator returns every action it has scheduled so
far, and the host does what DurableTask.Core does with them. It walks the
actions in order against the history and hands out sequence ids the way the
SDK does (`DurableOrchestrationContext._add_to_open_tasks`, `RetryAbleTask`).
It compares each id with the TaskScheduled, TimerCreated or
SubOrchestrationInstanceCreated event recorded for it, and reports the ids
with no record yet as new work.

The id rules the SDK follows and this module mirrors:
- a task gets its id when it is first yielded; children of task_any/task_all
  get theirs in list order; the next top-level action is yielded only after
  the previous one has completed;
- wait_for_external_event takes no id; continue_as_new takes one;
- a retried call takes an id for the retry timer when an attempt fails and an
  id for the next attempt when that timer fires; after the last attempt one
  more timer fires and then the failure reaches the orchestrator.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from .protocol import (
    EVENT_TYPE_NAMES,
    ActionType,
    EventType,
    parse_timestamp,
    retry_interval,
    retry_max_attempts,
)

ACTIVITY = "activity"
TIMER = "timer"
SUB_ORCHESTRATION = "suborchestration"

_KIND_LABELS = {
    ACTIVITY: "CallActivity",
    TIMER: "CreateTimer",
    SUB_ORCHESTRATION: "CallSubOrchestrator",
}

_SCHEDULING_EVENTS = {
    EventType.TASK_SCHEDULED: ACTIVITY,
    EventType.TIMER_CREATED: TIMER,
    EventType.SUB_ORCHESTRATION_INSTANCE_CREATED: SUB_ORCHESTRATION,
}

# Completion event -> (kind of task it completes, key holding the sequence id,
# whether it is a success).
_COMPLETION_EVENTS = {
    EventType.TASK_COMPLETED: (ACTIVITY, "TaskScheduledId", True),
    EventType.TASK_FAILED: (ACTIVITY, "TaskScheduledId", False),
    EventType.TIMER_FIRED: (TIMER, "TimerId", True),
    EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED: (
        SUB_ORCHESTRATION,
        "TaskScheduledId",
        True,
    ),
    EventType.SUB_ORCHESTRATION_INSTANCE_FAILED: (
        SUB_ORCHESTRATION,
        "TaskScheduledId",
        False,
    ),
}

_UNSUPPORTED_ACTIONS = {
    ActionType.CALL_ENTITY: "call_entity",
    ActionType.CALL_HTTP: "call_http",
    ActionType.SIGNAL_ENTITY: "signal_entity",
    ActionType.SCHEDULED_SIGNAL_ENTITY: "signal_entity",
}


@dataclass
class NewWork:
    """A sequence id that the history has no scheduling event for yet."""

    sequence_id: int
    kind: str
    name: str | None = None
    input_json: str | None = None
    fire_at: datetime | None = None
    instance_id: str | None = None
    version: str | None = None
    cancelled: bool = False


def describe_task(kind: str, name: str | None) -> str:
    label = _KIND_LABELS[kind]
    return label if name is None else f"{label} '{name}'"


class _Node:
    parent: _Node | None = None
    done = False
    failed = False

    def schedule(self, replay: HostReplay) -> None:
        raise NotImplementedError

    def child_done(self, child: _Node, replay: HostReplay) -> None:
        raise NotImplementedError

    def finish(self, replay: HostReplay, *, failed: bool) -> None:
        if self.done:
            return
        self.done = True
        self.failed = failed
        if self.parent is None:
            replay._top_level_done(self)
        else:
            self.parent.child_done(self, replay)


class _Task(_Node):
    """An action that takes a sequence id: activity, timer or sub-orchestration."""

    def __init__(
        self,
        kind: str,
        action: dict | None,
        *,
        fire_at: datetime | None = None,
    ) -> None:
        self.kind = kind
        self.action = action or {}
        self.name = self.action.get("functionName") if kind != TIMER else None
        self.fire_at = fire_at
        if kind == TIMER and fire_at is None:
            self.fire_at = parse_timestamp(self.action["fireAt"])
        self.cancelled = bool(self.action.get("isCanceled"))
        self.sequence_id: int | None = None

    def schedule(self, replay: HostReplay) -> None:
        replay._allocate(self)

    def new_work(self) -> NewWork:
        return NewWork(
            sequence_id=self.sequence_id,
            kind=self.kind,
            name=self.name,
            input_json=self.action.get("input"),
            fire_at=self.fire_at,
            instance_id=self.action.get("instanceId"),
            version=self.action.get("version"),
            cancelled=self.cancelled,
        )


class _Retry(_Node):
    """call_activity_with_retry or call_sub_orchestrator_with_retry."""

    def __init__(self, kind: str, action: dict) -> None:
        self.kind = kind
        self.action = action
        self.attempts = 1
        self.max_attempts = retry_max_attempts(action)
        self.interval = retry_interval(action)

    def schedule(self, replay: HostReplay) -> None:
        self._start_attempt(replay)

    def _start_attempt(self, replay: HostReplay) -> None:
        attempt = _Task(self.kind, self.action)
        attempt.parent = self
        attempt.schedule(replay)
        if self.attempts > 1 and attempt.sequence_id not in replay._recorded:
            replay.new_retries.append((attempt.name, self.attempts))

    def child_done(self, child: _Node, replay: HostReplay) -> None:
        if self.done:
            return
        if isinstance(child, _Task) and child.kind == TIMER:
            if self.attempts >= self.max_attempts:
                self.finish(replay, failed=True)
            else:
                self.attempts += 1
                self._start_attempt(replay)
        elif not child.failed:
            self.finish(replay, failed=False)
        else:
            timer = _Task(TIMER, None, fire_at=replay.now + self.interval)
            timer.parent = self
            timer.schedule(replay)


class _Compound(_Node):
    """task_any (first child to finish wins, even a failed one) or task_all."""

    def __init__(self, is_any: bool, children: list[_Node]) -> None:
        self.is_any = is_any
        self.children = children
        for child in children:
            child.parent = self

    def schedule(self, replay: HostReplay) -> None:
        # Every child gets its id before a completion found during scheduling
        # (a buffered external event) may finish this node.
        for child in self.children:
            child.schedule(replay)
        if not self.children:
            self.finish(replay, failed=False)

    def child_done(self, child: _Node, replay: HostReplay) -> None:
        if self.done:
            if isinstance(child, _ExternalEvent):
                replay._reused_event_done()
            return
        if self.is_any:
            self.finish(replay, failed=False)
        elif child.failed:
            self.finish(replay, failed=True)
        elif all(c.done for c in self.children):
            self.finish(replay, failed=False)


class _ExternalEvent(_Node):
    def __init__(self, name: str) -> None:
        self.name = name

    def schedule(self, replay: HostReplay) -> None:
        replay._wait_for_event(self)


class _FireAndForget(_Node):
    """continue_as_new: takes a sequence id and completes at once."""

    def schedule(self, replay: HostReplay) -> None:
        replay._next_id += 1
        self.finish(replay, failed=False)


class HostReplay:
    """Replay one episode's actions against the history, as the host does.

    After `run()`: `new_work` contains the ids without a scheduling event,
    `new_retries` the (function, attempt) pairs among them that re-run a failed
    call, `cancelled_timer_ids` the timers the orchestrator cancelled, and
    `error` a non-determinism message or an unsupported action. `mismatch` is true
    when the error is a recorded task that replay now schedules differently.
    """

    def __init__(self, actions: list[dict], history: list[dict], now: datetime):
        self.now = now
        self._actions = actions
        self._history = history
        self._recorded = _recorded_tasks(history)
        self._next_id = 0
        self._tasks: dict[int, _Task] = {}
        self._position = 0
        self._current: _Node | None = None
        self._advancing = False
        self._waiters: dict[str, list[_ExternalEvent]] = defaultdict(list)
        self._buffered_event_names: set[str] = set()

        self.new_work: list[NewWork] = []
        self.cancelled_timer_ids: set[int] = set()
        self.unconsumed_events: list[dict] = []
        self.new_retries: list[tuple[str | None, int]] = []
        self.error: str | None = None
        self.mismatch = False

    def run(self) -> HostReplay:
        for event in self._history:
            event_type = event.get("EventType")
            if event_type == EventType.EXECUTION_STARTED:
                self._advance()
            elif event_type in _COMPLETION_EVENTS:
                self._deliver(event)
            elif event_type == EventType.EVENT_RAISED:
                self._deliver_external_event(event)
            if self.error:
                return self
        # Actions that the sequential walk did not reach are still the
        # orchestrator's requests; schedule them so no work is lost.
        self._advance(force=True)
        return self

    def _advance(self, *, force: bool = False) -> None:
        # NOTE: the next top-level action is taken to be yielded when the previous
        # one completes. When code yields a task_any loser or a compound of tasks
        # already scheduled, the SDK allocates later than this, which changes ids
        # only if a retry of another task allocates in between.
        if self._advancing:
            return
        self._advancing = True
        try:
            while self._position < len(self._actions) and not self.error:
                if self._current is not None and not self._current.done and not force:
                    break
                node = self._build(self._actions[self._position])
                self._position += 1
                self._current = node
                node.schedule(self)
        finally:
            self._advancing = False

    def _top_level_done(self, node: _Node) -> None:
        if node is self._current:
            self._advance()

    def _build(self, action: dict) -> _Node:
        action_type = action.get("actionType")
        if action_type == ActionType.CALL_ACTIVITY:
            return _Task(ACTIVITY, action)
        if action_type == ActionType.CALL_ACTIVITY_WITH_RETRY:
            return _Retry(ACTIVITY, action)
        if action_type == ActionType.CALL_SUB_ORCHESTRATOR:
            return _Task(SUB_ORCHESTRATION, action)
        if action_type == ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY:
            return _Retry(SUB_ORCHESTRATION, action)
        if action_type == ActionType.CREATE_TIMER:
            return _Task(TIMER, action)
        if action_type == ActionType.WAIT_FOR_EXTERNAL_EVENT:
            return _ExternalEvent(action.get("externalEventName"))
        if action_type == ActionType.CONTINUE_AS_NEW:
            return _FireAndForget()
        if action_type in (ActionType.WHEN_ANY, ActionType.WHEN_ALL):
            children = [self._build(child) for child in action["compoundActions"]]
            return _Compound(action_type == ActionType.WHEN_ANY, children)

        api = _UNSUPPORTED_ACTIONS.get(action_type, f"actionType {action_type}")
        self.error = f"devhost does not support {api} (action type {action_type})"
        return _FireAndForget()

    def _allocate(self, task: _Task) -> None:
        sequence_id = self._next_id
        self._next_id += 1
        task.sequence_id = sequence_id
        self._tasks[sequence_id] = task
        if task.kind == TIMER and task.cancelled:
            self.cancelled_timer_ids.add(sequence_id)

        recorded = self._recorded.get(sequence_id)
        if recorded is None:
            self.new_work.append(task.new_work())
        elif not _same_task(recorded, task):
            self._fail_mismatch(
                f"sequence id {sequence_id} was {describe_task(*recorded)} "
                f"and is now {describe_task(task.kind, task.name)}"
            )

    def _deliver(self, event: dict) -> None:
        event_type = EventType(event["EventType"])
        kind, id_key, success = _COMPLETION_EVENTS[event_type]
        sequence_id = event.get(id_key)
        task = self._tasks.get(sequence_id)
        event_name = EVENT_TYPE_NAMES[event_type]

        if task is None:
            task = self._catch_up(sequence_id)
        if task is None:
            self.error = (
                f"Non-deterministic orchestration: history has {event_name} for "
                f"sequence id {sequence_id}, which the orchestrator no longer "
                f"schedules"
            )
            return
        if task.kind != kind:
            self._fail_mismatch(
                f"history has {event_name} for sequence id {sequence_id}, "
                f"which is now {describe_task(task.kind, task.name)}"
            )
            return
        if task.done:
            return
        task.finish(self, failed=not success)

    def _catch_up(self, sequence_id: int) -> _Task | None:
        """Schedule further actions until `sequence_id` has a task, if one does.

        The walk waits for the current node before it takes the next action,
        but a compound whose hidden child finished (see `_reused_event_done`)
        never finishes here, so a later completion may arrive first.
        """
        while (
            sequence_id not in self._tasks
            and self._position < len(self._actions)
            and not self.error
        ):
            node = self._build(self._actions[self._position])
            self._position += 1
            self._current = node
            node.schedule(self)
        return self._tasks.get(sequence_id)

    def _reused_event_done(self) -> None:
        """Finish the current task_any when an event wait from an earlier one arrives.

        The SDK leaves a task that it scheduled before out of a later compound's
        actions, yet completes that compound when the task finishes. The usual
        case is one wait_for_external_event raced against a new timer in every
        loop pass, so the current task_any is taken to contain the event.
        """
        current = self._current
        if isinstance(current, _Compound) and current.is_any and not current.done:
            current.finish(self, failed=False)

    def _wait_for_event(self, node: _ExternalEvent) -> None:
        # The SDK keeps an event that arrived before anyone waited and completes
        # every later wait for that name with it (`deferred_tasks` is never
        # cleared during a replay), so the name stays buffered here too.
        if node.name in self._buffered_event_names:
            self._mark_consumed(node.name)
            node.finish(self, failed=False)
        else:
            self._waiters[node.name].append(node)

    def _deliver_external_event(self, event: dict) -> None:
        name = event.get("Name")
        waiters = self._waiters.get(name)
        if waiters:
            # The SDK completes the most recent wait for the name first.
            waiters.pop().finish(self, failed=False)
            return
        self._buffered_event_names.add(name)
        self.unconsumed_events.append(event)

    def _mark_consumed(self, name: str) -> None:
        for index in range(len(self.unconsumed_events) - 1, -1, -1):
            if self.unconsumed_events[index].get("Name") == name:
                del self.unconsumed_events[index]
                return

    def _fail_mismatch(self, detail: str) -> None:
        self.error = f"Non-deterministic orchestration: {detail}"
        self.mismatch = True


def _recorded_tasks(history: list[dict]) -> dict[int, tuple[str, str | None]]:
    recorded = {}
    for event in history:
        kind = _SCHEDULING_EVENTS.get(event.get("EventType"))
        if kind is None:
            continue
        name = None if kind == TIMER else event.get("Name")
        recorded[event["EventId"]] = (kind, name)
    return recorded


def _same_task(recorded: tuple[str, str | None], task: _Task) -> bool:
    kind, name = recorded
    if kind != task.kind:
        return False
    # Function names are case-insensitive in Azure Functions.
    return (name or "").lower() == (task.name or "").lower()
