"""Durable engine: orchestration episodes, activities and timers.

Each message for an instance (ExecutionStarted, an activity result, a fired
timer, a raised event, a sub-orchestration result) is one episode. The engine
sends the orchestrator the whole history plus OrchestratorStarted and that one
new event, and replays the returned actions host-side (`replay.HostReplay`).
It then commits the new history events, the new work items and the consumed
message in one SQLite transaction. Activities run on a worker pool, and each
result is committed together with the removal of its work item, as a message
for the next episode. Work not finished when the process stopped is picked up
again when an engine opens the same folder.

Driving the engine:
- `run_until_idle()` runs everything in the calling thread (activities on the
  pool) until nothing is left; with a `VirtualClock` it jumps to the next timer.
- `run_in_background()` starts a dispatcher thread, as `python -m devhost` does.

Start, raise event, terminate and the other management calls are in
`management.ManagementMixin`.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from . import protocol
from .clock import HIGH_WATER_KEY, Clock, WallClock
from .functions import AppIndex, load_app
from .management import ManagementMixin
from .protocol import ActionType, EventType, format_timestamp, new_event
from .replay import ACTIVITY, SUB_ORCHESTRATION, TIMER, HostReplay, NewWork
from .status import (
    COMPLETED,
    CONTINUED_AS_NEW,
    FAILED,
    PENDING,
    RUNNING,
    TERMINAL_STATUSES,
)
from .store import ActivityItem, Instance, Message, Store

log = logging.getLogger("devhost.engine")

# Meta key of the episode CPU figures (EpisodeStats).
STATS_KEY = "stats.episodes"

# Azure rejects a larger custom status with "The UTF-16 size of the
# JSON-serialized payload must not exceed 16 KB".
MAX_CUSTOM_STATUS_BYTES = 16 * 1024


@dataclass
class _Outcome:
    """Decision of one episode, ready to commit."""

    kind: str  # RUNNING, COMPLETED, FAILED or CONTINUED_AS_NEW
    events: list[dict]
    new_work: list[NewWork] = field(default_factory=list)
    cancelled_timer_ids: set[int] = field(default_factory=set)
    custom_status_json: str | None = None
    output_json: str | None = None
    failure_reason: str = ""
    failure_details: str = ""
    continue_input_json: str | None = None
    carried_events: list[dict] = field(default_factory=list)


class EpisodeStats:
    """CPU seconds the dispatcher spent on episodes, for benchmarks.

    `replay_cpu_seconds` covers building the context, the orchestrator's
    replay in the SDK and the host-side replay of its actions;
    `episode_cpu_seconds` is the whole episode, its commit included. Both are
    thread CPU time of the dispatcher, kept in the meta table under
    `STATS_KEY` every `SAVE_EVERY` episodes and when the engine closes.
    """

    SAVE_EVERY = 200

    def __init__(self) -> None:
        self.episodes = 0
        self.episode_cpu_seconds = 0.0
        self.replay_cpu_seconds = 0.0
        self.max_replay_cpu_seconds = 0.0

    def add_replay(self, seconds: float) -> None:
        self.replay_cpu_seconds += seconds
        self.max_replay_cpu_seconds = max(self.max_replay_cpu_seconds, seconds)

    def add_episode(self, seconds: float) -> bool:
        """Count one committed episode; return True when the figures should be saved."""
        self.episodes += 1
        self.episode_cpu_seconds += seconds
        return self.episodes % self.SAVE_EVERY == 0

    def to_json(self) -> str:
        return json.dumps(
            {
                "episodes": self.episodes,
                "episode_cpu_seconds": round(self.episode_cpu_seconds, 6),
                "replay_cpu_seconds": round(self.replay_cpu_seconds, 6),
                "max_replay_cpu_seconds": round(self.max_replay_cpu_seconds, 6),
            }
        )


class _WorkerPool:
    """Activity worker threads.

    They are daemon threads, so a stuck activity cannot keep the process from
    exiting.
    """

    def __init__(self, size: int) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._threads = [
            threading.Thread(
                target=self._work, name=f"devhost-activity-{i}", daemon=True
            )
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._queue.put(job)

    def close(self, timeout: float) -> bool:
        """Stop the workers; return False if some were still busy at the timeout."""
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job()


class Engine(ManagementMixin):
    """Local Durable Functions engine over one data folder.

    `app` is anything `functions.load_app` accepts: a module name, a module,
    a `df.DFApp` or an `AppIndex`.
    """

    def __init__(
        self,
        app: Any,
        data_dir: str | Path,
        *,
        clock: Clock | None = None,
        workers: int = 8,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.app: AppIndex = load_app(app)
        self.data_dir = Path(data_dir)
        self.clock = clock or WallClock()
        self.workers = workers
        self._store = Store(self.data_dir)
        self.clock.attach(self._store.read_meta, self._store.write_meta)

        self._wake = threading.Event()
        self._inflight: set[int] = set()
        self._inflight_lock = threading.Lock()
        self._pool = _WorkerPool(workers)
        self._closed = False
        self._stopping = threading.Event()
        self._dispatcher: threading.Thread | None = None
        self.stats = EpisodeStats()
        log.info(
            "engine.opened data_dir=%s workers=%d clock=%s pending_activities=%d "
            "pending_messages=%d",
            self.data_dir,
            workers,
            type(self.clock).__name__,
            self._store.count_activities(),
            self._store.count_messages(),
        )

    @property
    def task_hub(self) -> str:
        return self.app.task_hub

    def read_meta(self, key: str) -> str | None:
        """Return a value of the small key-value state kept in the data folder."""
        return self._store.read_meta(key)

    def write_meta(self, key: str, value: str) -> None:
        self._store.write_meta(key, value)

    # Running -------------------------------------------------------------

    def run_until_idle(self, *, timeout: float = 30.0) -> None:
        """Run episodes, activities and timers until no work is left.

        Returns when no message, activity or timer remains; instances waiting
        only for external events count as idle. With a virtual clock, time
        jumps to the next timer when nothing else can run; with another clock
        the call sleeps until it is due. Raises TimeoutError after `timeout`
        wall-clock seconds.
        """
        if self._dispatcher is not None:
            raise RuntimeError(
                "run_until_idle() cannot be used with run_in_background()"
            )
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"engine still busy after {timeout} s")
            self._wake.clear()
            if self.process_messages(limit=1):
                continue
            self._dispatch_activities()
            if self._inflight_count():
                self._wake.wait(min(remaining, 1.0))
                continue
            if self._fire_due_timers():
                continue
            next_timer = self._store.next_timer()
            if next_timer is None:
                return
            fire_at = protocol.parse_timestamp(next_timer.fire_at)
            if self.clock.is_virtual:
                self.clock.advance_to(fire_at)
                continue
            self._wake.wait(min(remaining, self.clock.wall_seconds_until(fire_at)))

    def process_messages(self, limit: int | None = None) -> int:
        """Run up to `limit` pending episodes in the calling thread; return the count.

        Activities and timers are not run, which lets a test stop the engine
        with work still pending.
        """
        count = 0
        while limit is None or count < limit:
            if not self._process_next_message():
                break
            count += 1
        return count

    def run_activities(self, *, timeout: float = 30.0) -> None:
        """Run the pending activities and wait for them, without running episodes.

        Their results are committed as messages for the next episodes, which
        lets a test stop the engine between an activity and its episode.
        """
        if self._dispatcher is not None:
            raise RuntimeError(
                "run_activities() cannot be used with run_in_background()"
            )
        deadline = time.monotonic() + timeout
        self._dispatch_activities()
        while self._inflight_count():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"activities still running after {timeout} s")
            self._wake.clear()
            if self._inflight_count():
                self._wake.wait(min(remaining, 1.0))

    def run_in_background(self) -> None:
        """Start the dispatcher thread that runs episodes, timers and activities."""
        if self._dispatcher is not None:
            return
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, name="devhost-dispatcher", daemon=True
        )
        self._dispatcher.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the dispatcher and the workers, then close the store.

        Activities still running after `timeout` seconds are abandoned; their
        work items stay in the store and run again when the folder is reopened.
        """
        if self._closed:
            return
        self._stopping.set()
        self._wake.set()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout)
        finished = self._pool.close(timeout)
        with self._store.lock:
            self._closed = True
            self._store.write_meta(STATS_KEY, self.stats.to_json())
            self._store.close()
        log.info(
            "engine.closed data_dir=%s workers_finished=%s", self.data_dir, finished
        )

    def wait_for_status(
        self,
        instance_id: str,
        statuses: tuple[str, ...] = tuple(TERMINAL_STATUSES),
        timeout: float = 10.0,
    ) -> dict:
        """Poll until the instance has one of `statuses`; return its status JSON."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.get_status(instance_id)
            if status is not None and status["runtimeStatus"] in statuses:
                return status
            if time.monotonic() > deadline:
                current = None if status is None else status["runtimeStatus"]
                raise TimeoutError(
                    f"instance {instance_id} is {current} after {timeout} s, "
                    f"expected one of {', '.join(statuses)}"
                )
            time.sleep(0.02)

    def _dispatch_loop(self) -> None:
        log.info("dispatcher.started")
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                progressed = self._process_next_message()
                progressed = self._fire_due_timers() or progressed
                self._dispatch_activities()
            except Exception:
                log.exception("dispatcher.error")
                progressed = False
            if progressed:
                continue
            timeout = 1.0
            next_timer = self._store.next_timer()
            if next_timer is not None:
                fire_at = protocol.parse_timestamp(next_timer.fire_at)
                timeout = min(timeout, self.clock.wall_seconds_until(fire_at))
            self._wake.wait(timeout)
        log.info("dispatcher.stopped")

    # Episodes ------------------------------------------------------------

    def _process_next_message(self) -> bool:
        store = self._store
        with store.lock:
            if self._closed:
                return False
            message = store.next_message()
            if message is None:
                return False
            instance = store.get_instance(message.instance_id)
            if not _message_applies(message, instance):
                store.delete_message(message.id)
                log.info(
                    "message.dropped instance=%s event=%s reason=%s",
                    message.instance_id,
                    _event_name(message.event),
                    "no_instance" if instance is None else instance.status,
                )
                return True
            history = store.load_history(instance.instance_id)

        episode_started = time.thread_time()
        try:
            outcome = self._run_episode(instance, history, message)
        except Exception as exc:
            log.exception("episode.internal_error instance=%s", instance.instance_id)
            outcome = self._failure_outcome(
                instance,
                message,
                self.clock.now(),
                f"devhost internal error: {type(exc).__name__}: {exc}",
                traceback.format_exc(),
            )

        with store.transaction():
            current = store.get_instance(instance.instance_id)
            if (
                current is None
                or current.revision != instance.revision
                or not store.message_exists(message.id)
            ):
                # Terminated, purged or replaced while the episode ran: the
                # message is looked at again with the new state.
                return True
            self._commit(instance, message, outcome)
            store.write_meta(HIGH_WATER_KEY, outcome.events[0]["Timestamp"])
            if self.stats.add_episode(time.thread_time() - episode_started):
                store.write_meta(STATS_KEY, self.stats.to_json())
        self._wake.set()
        return True

    def _run_episode(
        self, instance: Instance, history: list[dict], message: Message
    ) -> _Outcome:
        now = self.clock.now()
        started = new_event(EventType.ORCHESTRATOR_STARTED, now)
        event = dict(message.event)
        if event["EventType"] == EventType.EXECUTION_STARTED:
            log.info(
                "orchestration.started instance=%s name=%s execution=%s",
                instance.instance_id,
                instance.name,
                instance.execution_id,
            )

        orchestrator = self.app.orchestrator(instance.name)
        if orchestrator is None:
            return self._failure_outcome(
                instance,
                message,
                now,
                f"The function '{instance.name}' doesn't exist, is disabled, or is "
                f"not an orchestrator function.",
            )

        replay_started = time.thread_time()
        context_json = protocol.build_context_json(
            instance_id=instance.instance_id,
            parent_instance_id=instance.parent_instance_id,
            input_json=instance.input,
            past_events=history,
            new_events=[started, event],
        )
        try:
            result = protocol.parse_orchestrator_state(
                orchestrator.invoke(context_json)
            )
        except protocol.ProtocolError as exc:
            return self._failure_outcome(instance, message, now, str(exc))
        except Exception as exc:  # noqa: BLE001 - user code fails the instance
            try:
                result = protocol.parse_orchestrator_exception(str(exc))
            except protocol.ProtocolError as parse_error:
                result = None
                log.warning(
                    "episode.unreadable_error instance=%s error=%s",
                    instance.instance_id,
                    parse_error,
                )
            if result is None:
                return self._failure_outcome(
                    instance,
                    message,
                    now,
                    f"Orchestrator function '{instance.name}' failed: {exc}",
                    _format_traceback(exc),
                )
            result.details = _format_traceback(exc.__cause__ or exc)

        replay = HostReplay(result.actions, [*history, started, event], now).run()
        self.stats.add_replay(time.thread_time() - replay_started)
        return self._decide(instance, message, now, started, event, result, replay)

    def _decide(
        self,
        instance: Instance,
        message: Message,
        now: datetime,
        started: dict,
        event: dict,
        result: protocol.OrchestratorResult,
        replay: HostReplay,
    ) -> _Outcome:
        custom_status_json = None
        if result.has_custom_status:
            custom_status_json = json.dumps(result.custom_status)
            size = len(custom_status_json.encode("utf-16-le"))
            if size > MAX_CUSTOM_STATUS_BYTES:
                return self._failure_outcome(
                    instance,
                    message,
                    now,
                    f"The custom status of orchestration '{instance.name}' is {size} "
                    f"bytes of UTF-16 JSON; the limit is {MAX_CUSTOM_STATUS_BYTES}.",
                )

        for function_name, attempt in replay.new_retries:
            log.info(
                "task.retry instance=%s function=%s attempt=%d",
                instance.instance_id,
                function_name,
                attempt,
            )

        failure = None
        if result.error is not None:
            if replay.mismatch:
                failure = (replay.error, "")
            else:
                reason = (
                    f"Orchestrator function '{instance.name}' failed: {result.error}"
                )
                failure = (reason, result.details)
        elif replay.error:
            failure = (replay.error, "")
        if failure is not None:
            outcome = self._failure_outcome(instance, message, now, *failure)
            outcome.custom_status_json = custom_status_json
            return outcome

        if result.is_done:
            continue_action = _continue_as_new_action(result.actions)
            if continue_action is not None:
                return _Outcome(
                    kind=CONTINUED_AS_NEW,
                    events=[started, event],
                    custom_status_json=custom_status_json,
                    continue_input_json=continue_action.get("input"),
                    carried_events=replay.unconsumed_events,
                )
            output_json = json.dumps(result.output)
            completed = new_event(
                EventType.EXECUTION_COMPLETED,
                now,
                OrchestrationStatus=COMPLETED,
                Result=output_json,
                FailureDetails=None,
            )
            return _Outcome(
                kind=COMPLETED,
                events=[started, event, completed, _orchestrator_completed(now)],
                custom_status_json=custom_status_json,
                output_json=output_json,
            )

        events = [started, event]
        events.extend(
            _scheduling_event(work, instance, now) for work in replay.new_work
        )
        events.append(_orchestrator_completed(now))
        return _Outcome(
            kind=RUNNING,
            events=events,
            new_work=replay.new_work,
            cancelled_timer_ids=replay.cancelled_timer_ids,
            custom_status_json=custom_status_json,
        )

    def _failure_outcome(
        self,
        instance: Instance,
        message: Message,
        now: datetime,
        reason: str,
        details: str = "",
    ) -> _Outcome:
        failed = new_event(
            EventType.EXECUTION_COMPLETED,
            now,
            OrchestrationStatus=FAILED,
            Result=json.dumps(reason),
            FailureDetails={"ErrorMessage": reason, "Details": details},
        )
        return _Outcome(
            kind=FAILED,
            events=[
                new_event(EventType.ORCHESTRATOR_STARTED, now),
                dict(message.event),
                failed,
                _orchestrator_completed(now),
            ],
            output_json=json.dumps(reason),
            failure_reason=reason,
            failure_details=details,
        )

    def _commit(self, instance: Instance, message: Message, outcome: _Outcome) -> None:
        store = self._store
        now_text = outcome.events[0]["Timestamp"]
        instance_id = instance.instance_id
        changes: dict[str, object] = {"last_updated_time": now_text}
        if outcome.custom_status_json is not None:
            changes["custom_status"] = outcome.custom_status_json

        if outcome.kind == CONTINUED_AS_NEW:
            self._continue_as_new(instance, message, outcome, changes)
            return

        store.append_history(instance_id, outcome.events)
        store.delete_message(message.id)
        if outcome.kind == RUNNING:
            changes["status"] = RUNNING
            store.update_instance(instance_id, **changes)
            store.delete_timers(instance_id, outcome.cancelled_timer_ids)
            for work in outcome.new_work:
                self._start_work(instance, work, now_text)
            return

        changes["status"] = outcome.kind
        changes["output"] = outcome.output_json
        store.update_instance(instance_id, **changes)
        store.delete_activities(instance_id)
        store.delete_timers(instance_id)
        self._notify_parent(
            instance,
            outcome.kind,
            outcome.output_json,
            outcome.failure_reason,
            outcome.failure_details,
            now_text,
        )
        if outcome.kind == COMPLETED:
            log.info(
                "orchestration.completed instance=%s name=%s",
                instance_id,
                instance.name,
            )
        else:
            log.warning(
                "orchestration.failed instance=%s name=%s reason=%s",
                instance_id,
                instance.name,
                _first_line(outcome.failure_reason),
            )

    def _start_work(self, instance: Instance, work: NewWork, now_text: str) -> None:
        store = self._store
        if work.kind == ACTIVITY:
            store.add_activity(
                instance.instance_id,
                instance.execution_id,
                work.sequence_id,
                work.name,
                work.input_json,
            )
            log.info(
                "activity.scheduled instance=%s function=%s sequence_id=%d",
                instance.instance_id,
                work.name,
                work.sequence_id,
            )
        elif work.kind == TIMER:
            if not work.cancelled:
                store.add_timer(
                    instance.instance_id,
                    instance.execution_id,
                    work.sequence_id,
                    format_timestamp(work.fire_at),
                )
            log.info(
                "timer.created instance=%s sequence_id=%d fire_at=%s cancelled=%s",
                instance.instance_id,
                work.sequence_id,
                format_timestamp(work.fire_at),
                work.cancelled,
            )
        elif work.kind == SUB_ORCHESTRATION:
            self._start_sub_orchestration(instance, work, now_text)

    def _start_sub_orchestration(
        self, parent: Instance, work: NewWork, now_text: str
    ) -> None:
        store = self._store
        child_id = work.instance_id
        existing = store.get_instance(child_id)
        if existing is not None and existing.status not in TERMINAL_STATUSES:
            failed = new_event(
                EventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
                protocol.parse_timestamp(now_text),
                TaskScheduledId=work.sequence_id,
                Reason=(
                    f"An orchestration instance with ID '{child_id}' already exists "
                    f"and is {existing.status}."
                ),
                Details="",
            )
            store.enqueue(parent.instance_id, parent.execution_id, failed)
            log.warning(
                "suborchestration.rejected instance=%s child=%s status=%s",
                parent.instance_id,
                child_id,
                existing.status,
            )
            return
        if existing is not None:
            store.delete_instance(child_id)
        self._create_instance(
            child_id,
            work.name,
            work.input_json,
            work.version or "",
            now_text,
            parent=parent,
            parent_task_id=work.sequence_id,
        )
        log.info(
            "suborchestration.created instance=%s child=%s name=%s sequence_id=%d",
            parent.instance_id,
            child_id,
            work.name,
            work.sequence_id,
        )

    def _continue_as_new(
        self,
        instance: Instance,
        message: Message,
        outcome: _Outcome,
        changes: dict[str, object],
    ) -> None:
        store = self._store
        instance_id = instance.instance_id
        execution_id = uuid.uuid4().hex
        now_text = outcome.events[0]["Timestamp"]
        now = protocol.parse_timestamp(now_text)

        # Raised events that no wait consumed go to the next execution. Those
        # from the old history go first, then those still queued, in order.
        queued_events = [
            m.event
            for m in store.messages_for(instance_id)
            if m.id != message.id and m.execution_id is None
        ]
        store.delete_messages(instance_id)
        store.delete_activities(instance_id)
        store.delete_timers(instance_id)
        store.clear_history(instance_id)

        started = protocol.execution_started_event(
            now,
            name=instance.name,
            instance_id=instance_id,
            execution_id=execution_id,
            input_json=outcome.continue_input_json,
            version=instance.version,
            parent=_parent_reference(instance),
        )
        store.enqueue(instance_id, execution_id, started, is_start=True)
        for event in [*outcome.carried_events, *queued_events]:
            store.enqueue(instance_id, None, dict(event, IsPlayed=False))

        changes.update(
            execution_id=execution_id,
            input=outcome.continue_input_json,
            output=None,
            status=RUNNING,
        )
        store.update_instance(instance_id, **changes)
        log.info(
            "orchestration.continued_as_new instance=%s name=%s execution=%s "
            "carried_events=%d",
            instance_id,
            instance.name,
            execution_id,
            len(outcome.carried_events) + len(queued_events),
        )

    def _notify_parent(
        self,
        instance: Instance,
        status: str,
        output_json: str | None,
        reason: str,
        details: str,
        now_text: str,
    ) -> None:
        if not instance.parent_instance_id:
            return
        now = protocol.parse_timestamp(now_text)
        if status == COMPLETED:
            event = new_event(
                EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
                now,
                TaskScheduledId=instance.parent_task_id,
                Result=output_json,
            )
        else:
            event = new_event(
                EventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
                now,
                TaskScheduledId=instance.parent_task_id,
                Reason=reason,
                Details=details,
            )
        self._store.enqueue(
            instance.parent_instance_id, instance.parent_execution_id, event
        )

    def _create_instance(
        self,
        instance_id: str,
        name: str,
        input_json: str | None,
        version: str,
        now_text: str,
        *,
        parent: Instance | None = None,
        parent_task_id: int | None = None,
    ) -> None:
        execution_id = uuid.uuid4().hex
        instance = Instance(
            instance_id=instance_id,
            name=name,
            execution_id=execution_id,
            status=PENDING,
            input=input_json,
            output=None,
            custom_status=None,
            created_time=now_text,
            last_updated_time=now_text,
            version=version,
            parent_instance_id=parent.instance_id if parent else None,
            parent_execution_id=parent.execution_id if parent else None,
            parent_name=parent.name if parent else None,
            parent_task_id=parent_task_id,
        )
        self._store.put_instance(instance)
        started = protocol.execution_started_event(
            protocol.parse_timestamp(now_text),
            name=name,
            instance_id=instance_id,
            execution_id=execution_id,
            input_json=input_json,
            version=version,
            parent=_parent_reference(instance),
        )
        self._store.enqueue(instance_id, execution_id, started, is_start=True)

    # Activities and timers -------------------------------------------------

    def _inflight_count(self) -> int:
        with self._inflight_lock:
            return len(self._inflight)

    def _dispatch_activities(self) -> None:
        with self._inflight_lock:
            free = self.workers - len(self._inflight)
            if free <= 0:
                return
            with self._store.lock:
                if self._closed:
                    return
                items = self._store.pending_activities(set(self._inflight), free)
            for item in items:
                self._inflight.add(item.id)
        for item in items:
            self._pool.submit(lambda item=item: self._run_activity(item))

    def _run_activity(self, item: ActivityItem) -> None:
        try:
            event = self._execute_activity(item)
            with self._store.lock:
                if self._closed:
                    return
                with self._store.transaction():
                    if self._store.delete_activity(item.id):
                        self._store.enqueue(item.instance_id, item.execution_id, event)
                        stored = True
                    else:
                        stored = False
            if not stored:
                log.info(
                    "activity.result_dropped instance=%s function=%s sequence_id=%d",
                    item.instance_id,
                    item.name,
                    item.task_id,
                )
        except Exception:
            log.exception(
                "activity.commit_failed instance=%s function=%s sequence_id=%d",
                item.instance_id,
                item.name,
                item.task_id,
            )
        finally:
            with self._inflight_lock:
                self._inflight.discard(item.id)
            self._wake.set()

    def _execute_activity(self, item: ActivityItem) -> dict:
        activity = self.app.activity(item.name)
        if activity is None:
            reason = (
                f"The function '{item.name}' doesn't exist, is disabled, or is not an "
                f"activity function."
            )
            log.warning(
                "activity.not_found instance=%s function=%s",
                item.instance_id,
                item.name,
            )
            return new_event(
                EventType.TASK_FAILED,
                self.clock.now(),
                TaskScheduledId=item.task_id,
                Reason=reason,
                Details="",
            )

        log.info(
            "activity.started instance=%s function=%s sequence_id=%d",
            item.instance_id,
            item.name,
            item.task_id,
        )
        started = time.monotonic()
        try:
            result_json = activity.invoke(item.input, self.app.app_dir)
        except Exception as exc:  # noqa: BLE001 - any error becomes TaskFailed
            log.warning(
                "activity.failed instance=%s function=%s sequence_id=%d error_type=%s "
                "error=%s",
                item.instance_id,
                item.name,
                item.task_id,
                type(exc).__name__,
                _first_line(str(exc))[:300],
            )
            return new_event(
                EventType.TASK_FAILED,
                self.clock.now(),
                TaskScheduledId=item.task_id,
                Reason=str(exc),
                Details=_format_traceback(exc),
            )
        log.info(
            "activity.completed instance=%s function=%s sequence_id=%d duration_ms=%d",
            item.instance_id,
            item.name,
            item.task_id,
            (time.monotonic() - started) * 1000,
        )
        return new_event(
            EventType.TASK_COMPLETED,
            self.clock.now(),
            TaskScheduledId=item.task_id,
            Result=result_json,
        )

    def _fire_due_timers(self) -> bool:
        now = self.clock.now()
        with self._store.lock:
            if self._closed:
                return False
            with self._store.transaction():
                due = self._store.due_timers(format_timestamp(now))
                for timer in due:
                    self._store.delete_timer(timer.id)
                    fired = new_event(
                        EventType.TIMER_FIRED,
                        now,
                        TimerId=timer.timer_id,
                        FireAt=timer.fire_at,
                    )
                    self._store.enqueue(timer.instance_id, timer.execution_id, fired)
        for timer in due:
            log.info(
                "timer.fired instance=%s sequence_id=%d fire_at=%s",
                timer.instance_id,
                timer.timer_id,
                timer.fire_at,
            )
        return bool(due)


def _message_applies(message: Message, instance: Instance | None) -> bool:
    if instance is None or instance.status in TERMINAL_STATUSES:
        return False
    if (
        message.execution_id is not None
        and message.execution_id != instance.execution_id
    ):
        return False
    return True


def _continue_as_new_action(actions: list[dict]) -> dict | None:
    for action in reversed(actions):
        if action.get("actionType") == ActionType.CONTINUE_AS_NEW:
            return action
    return None


def _scheduling_event(work: NewWork, instance: Instance, now: datetime) -> dict:
    if work.kind == ACTIVITY:
        return new_event(
            EventType.TASK_SCHEDULED,
            now,
            EventId=work.sequence_id,
            Name=work.name,
            Input=work.input_json,
            Version="",
        )
    if work.kind == TIMER:
        return new_event(
            EventType.TIMER_CREATED,
            now,
            EventId=work.sequence_id,
            FireAt=format_timestamp(work.fire_at),
        )
    # A sub-orchestration without an id gets "<parent id>:<sequence id>".
    if not work.instance_id:
        work.instance_id = f"{instance.instance_id}:{work.sequence_id}"
    return new_event(
        EventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
        now,
        EventId=work.sequence_id,
        Name=work.name,
        InstanceId=work.instance_id,
        Input=work.input_json,
        Version=work.version or "",
    )


def _orchestrator_completed(now: datetime) -> dict:
    return new_event(EventType.ORCHESTRATOR_COMPLETED, now)


def _parent_reference(instance: Instance) -> dict | None:
    if not instance.parent_instance_id:
        return None
    return {
        "Name": instance.parent_name,
        "Version": "",
        "TaskScheduleId": instance.parent_task_id,
        "OrchestrationInstance": {
            "InstanceId": instance.parent_instance_id,
            "ExecutionId": instance.parent_execution_id,
        },
    }


def _event_name(event: dict) -> str:
    try:
        return protocol.EVENT_TYPE_NAMES[EventType(event.get("EventType"))]
    except ValueError:
        return str(event.get("EventType"))


def _format_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
