"""Management operations of the engine: start, events, terminate, suspend,
resume, restart, rewind, purge, and the status queries.

`ManagementMixin` is part of `Engine`; it works on the engine's store and
clock and uses its instance creation and parent notification.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from datetime import datetime
from typing import Any

from azure.durable_functions.models.utils.df_serialization import df_dumps

from .clock import Clock
from .errors import (
    InstanceExists,
    InstanceFinished,
    InstanceNotFound,
    InvalidOperation,
    UnknownOrchestrator,
)
from .functions import AppIndex
from .history import history_for_api
from .protocol import EventType, format_timestamp, new_event
from .rewind import plan_rewind
from .status import (
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    SUSPENDED,
    TERMINAL_STATUSES,
    TERMINATED,
    status_json,
)
from .store import Instance, Store

log = logging.getLogger("devhost.engine")


class ManagementMixin:
    app: AppIndex
    clock: Clock
    _store: Store
    _wake: threading.Event

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
        raise NotImplementedError

    def _notify_parent(
        self,
        instance: Instance,
        status: str,
        output_json: str | None,
        reason: str,
        details: str,
        now_text: str,
    ) -> None:
        raise NotImplementedError

    def start_new(
        self,
        name: str,
        input: Any = None,
        *,
        instance_id: str | None = None,
        version: str | None = None,
    ) -> str:
        """Start an orchestration with a Python input value; return its instance id."""
        input_json = None if input is None else df_dumps(input)
        return self.start_new_json(
            name, input_json, instance_id=instance_id, version=version
        )

    def start_new_json(
        self,
        name: str,
        input_json: str | None,
        *,
        instance_id: str | None = None,
        version: str | None = None,
    ) -> str:
        """Start an orchestration with input given as JSON text.

        An instance id that is pending, running or suspended raises
        InstanceExists; a finished instance with that id is replaced.
        """
        if self.app.orchestrator(name) is None:
            raise UnknownOrchestrator(
                f"The function '{name}' doesn't exist, is disabled, or is not an "
                f"orchestrator function. Orchestrators of this app: "
                f"{', '.join(sorted(o.name for o in self.app.orchestrators.values()))}."
            )
        instance_id = instance_id or uuid.uuid4().hex
        now_text = format_timestamp(self.clock.now())
        with self._store.transaction():
            existing = self._store.get_instance(instance_id)
            if existing is not None:
                if existing.status not in TERMINAL_STATUSES:
                    raise InstanceExists(
                        f"An orchestration instance with ID '{instance_id}' already "
                        f"exists and is {existing.status}."
                    )
                self._store.delete_instance(instance_id)
            self._create_instance(
                instance_id, name, input_json, version or "", now_text
            )
        log.info("orchestration.scheduled instance=%s name=%s", instance_id, name)
        self._wake.set()
        return instance_id

    def raise_event(
        self, instance_id: str, event_name: str, data_json: str | None
    ) -> None:
        """Queue an EventRaised with `data_json` (JSON text) for the instance."""
        with self._store.transaction():
            instance = self._require_instance(instance_id)
            if instance.status in TERMINAL_STATUSES:
                raise InstanceFinished(
                    f"Instance {instance_id} is {instance.status} and cannot receive "
                    f"events."
                )
            event = new_event(
                EventType.EVENT_RAISED,
                self.clock.now(),
                Name=event_name,
                Input=data_json,
            )
            self._store.enqueue(instance_id, None, event)
        log.info("event.raised instance=%s event=%s", instance_id, event_name)
        self._wake.set()

    def terminate(self, instance_id: str, reason: str = "") -> None:
        """Stop a pending, running or suspended instance with output `reason`.

        Its messages, activities and timers are dropped; a parent gets
        SubOrchestrationInstanceFailed. Sub-orchestrations keep running.
        """
        now = self.clock.now()
        now_text = format_timestamp(now)
        with self._store.transaction():
            instance = self._require_instance(instance_id)
            if instance.status in TERMINAL_STATUSES:
                raise InstanceFinished(f"Instance {instance_id} is {instance.status}.")
            reason_json = json.dumps(reason)
            self._store.append_history(
                instance_id,
                [
                    new_event(EventType.ORCHESTRATOR_STARTED, now),
                    new_event(EventType.EXECUTION_TERMINATED, now, Input=reason_json),
                    new_event(EventType.ORCHESTRATOR_COMPLETED, now),
                ],
            )
            self._store.update_instance(
                instance_id,
                status=TERMINATED,
                output=reason_json,
                last_updated_time=now_text,
            )
            self._store.delete_messages(instance_id)
            self._store.delete_activities(instance_id)
            self._store.delete_timers(instance_id)
            self._notify_parent(
                instance,
                TERMINATED,
                None,
                f"Orchestration terminated: {reason}",
                "",
                now_text,
            )
        log.info("orchestration.terminated instance=%s", instance_id)
        self._wake.set()

    def suspend(self, instance_id: str, reason: str = "") -> None:
        """Hold the instance's messages until `resume()`.

        Timers still fire and activities still finish; their results wait.
        NOTE: `reason` is accepted as in the HTTP API but not recorded; the
        real host adds ExecutionSuspended/ExecutionResumed events to history.
        """
        with self._store.transaction():
            instance = self._require_instance(instance_id)
            if instance.status in TERMINAL_STATUSES:
                raise InstanceFinished(f"Instance {instance_id} is {instance.status}.")
            if instance.status != SUSPENDED:
                self._store.update_instance(
                    instance_id,
                    status=SUSPENDED,
                    last_updated_time=format_timestamp(self.clock.now()),
                )
        log.info("orchestration.suspended instance=%s", instance_id)

    def resume(self, instance_id: str, reason: str = "") -> None:
        """Let a suspended instance process its held messages again."""
        with self._store.transaction():
            instance = self._require_instance(instance_id)
            if instance.status in TERMINAL_STATUSES:
                raise InstanceFinished(f"Instance {instance_id} is {instance.status}.")
            if instance.status == SUSPENDED:
                has_history = bool(self._store.load_history(instance_id))
                self._store.update_instance(
                    instance_id,
                    status=RUNNING if has_history else PENDING,
                    last_updated_time=format_timestamp(self.clock.now()),
                )
        log.info("orchestration.resumed instance=%s", instance_id)
        self._wake.set()

    def restart(self, instance_id: str, *, new_instance_id: bool = True) -> str:
        """Start the instance's orchestration again with its input; return the id."""
        instance = self._require_instance(instance_id)
        target_id = uuid.uuid4().hex if new_instance_id else instance_id
        return self.start_new_json(
            instance.name,
            instance.input,
            instance_id=target_id,
            version=instance.version,
        )

    def rewind(self, instance_id: str, reason: str = "") -> None:
        """Rewind a failed instance to before its first failed task, and rerun it.

        The history is cut at the episode that delivered the first failure.
        Results of later episodes for tasks scheduled before the cut are queued
        again, the failed activities and the timers still open run again, and
        a failed sub-orchestration is rewound too. Raised events after the cut
        are queued again as well.
        """
        with self._store.transaction():
            instance = self._require_instance(instance_id)
            if instance.status != FAILED:
                raise InvalidOperation(
                    f"Instance {instance_id} is {instance.status}; only failed "
                    f"instances can be rewound."
                )
            history = self._store.load_history(instance_id)
            plan = plan_rewind(history)
            if plan is None:
                raise InvalidOperation(
                    f"Instance {instance_id} has no failed task to rewind."
                )
            self._store.replace_history(instance_id, plan.history)
            self._store.update_instance(
                instance_id,
                status=RUNNING if plan.history else PENDING,
                output=None,
                last_updated_time=format_timestamp(self.clock.now()),
            )
            for event in plan.messages:
                self._store.enqueue(instance_id, instance.execution_id, event)
            for sequence_id, name, input_json in plan.activities:
                self._store.add_activity(
                    instance_id, instance.execution_id, sequence_id, name, input_json
                )
            for sequence_id, fire_at in plan.timers:
                self._store.add_timer(
                    instance_id, instance.execution_id, sequence_id, fire_at
                )
            for sequence_id, child_id in plan.sub_orchestrations:
                self._reattach_child(instance, sequence_id, child_id, reason)
        log.info("orchestration.rewound instance=%s", instance_id)
        self._wake.set()

    def _reattach_child(
        self, parent: Instance, sequence_id: int, child_id: str, reason: str
    ) -> None:
        child = self._store.get_instance(child_id)
        if child is None:
            return
        if child.status == FAILED:
            try:
                self.rewind(child_id, reason)
            except InvalidOperation:
                # The child failed in its own code, not in a task: run it again.
                now_text = format_timestamp(self.clock.now())
                self._store.delete_instance(child_id)
                self._create_instance(
                    child_id,
                    child.name,
                    child.input,
                    child.version,
                    now_text,
                    parent=parent,
                    parent_task_id=sequence_id,
                )
        elif child.status == COMPLETED:
            completed = new_event(
                EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
                self.clock.now(),
                TaskScheduledId=sequence_id,
                Result=child.output,
            )
            self._store.enqueue(parent.instance_id, parent.execution_id, completed)

    def purge(self, instance_id: str) -> int:
        """Delete a finished instance and its history; return the number deleted."""
        with self._store.transaction():
            instance = self._store.get_instance(instance_id)
            if instance is None:
                return 0
            if instance.status not in TERMINAL_STATUSES:
                raise InvalidOperation(
                    f"Instance {instance_id} is {instance.status}; terminate it before "
                    f"purging."
                )
            self._store.delete_instance(instance_id)
        log.info("orchestration.purged instance=%s", instance_id)
        return 1

    def purge_by(
        self,
        *,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        statuses: list[str] | None = None,
    ) -> int:
        """Delete finished instances matching the filters; return how many."""
        allowed = [s for s in (statuses or TERMINAL_STATUSES) if s in TERMINAL_STATUSES]
        if not allowed:
            return 0
        with self._store.transaction():
            instances = self._store.query_instances(
                created_from=_optional_timestamp(created_from),
                created_to=_optional_timestamp(created_to),
                statuses=allowed,
            )
            for instance in instances:
                self._store.delete_instance(instance.instance_id)
        log.info("orchestration.purged_by count=%d", len(instances))
        return len(instances)

    def _require_instance(self, instance_id: str) -> Instance:
        instance = self._store.get_instance(instance_id)
        if instance is None:
            raise InstanceNotFound(f"No instance with ID '{instance_id}' found.")
        return instance

    def get_status(
        self,
        instance_id: str,
        *,
        show_history: bool = False,
        show_history_output: bool = False,
        show_input: bool = True,
    ) -> dict | None:
        """Return the instance's status in the HTTP API's JSON shape, or None."""
        with self._store.lock:
            instance = self._store.get_instance(instance_id)
            if instance is None:
                return None
            status = status_json(instance, show_input=show_input)
            if show_history:
                history = self._store.load_history(instance_id)
                status["historyEvents"] = history_for_api(
                    history, include_output=show_history_output
                )
        return status

    def get_history(self, instance_id: str) -> list[dict]:
        """Return the raw history events of the instance's current execution."""
        return self._store.load_history(instance_id)

    def pending_timers(self, instance_id: str) -> list[str]:
        """Return the fire times of the instance's armed timers."""
        return [timer.fire_at for timer in self._store.timers_for(instance_id)]

    def query(
        self,
        *,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        statuses: list[str] | None = None,
        prefix: str | None = None,
        top: int | None = None,
        continuation_token: str | None = None,
        show_input: bool = False,
    ) -> tuple[list[dict], str | None]:
        """List instance statuses; return them with the next page's token or None."""
        after = _decode_token(continuation_token) if continuation_token else None
        limit = None if top is None else top + 1
        instances = self._store.query_instances(
            created_from=_optional_timestamp(created_from),
            created_to=_optional_timestamp(created_to),
            statuses=statuses,
            prefix=prefix,
            after=after,
            limit=limit,
        )
        token = None
        if top is not None and len(instances) > top:
            instances = instances[:top]
            last = instances[-1]
            token = _encode_token(last.created_time, last.instance_id)
        statuses_json = [status_json(i, show_input=show_input) for i in instances]
        return statuses_json, token


def _optional_timestamp(moment: datetime | None) -> str | None:
    return None if moment is None else format_timestamp(moment)


def _encode_token(created_time: str, instance_id: str) -> str:
    raw = json.dumps([created_time, instance_id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str) -> tuple[str, str]:
    try:
        created_time, instance_id = json.loads(base64.urlsafe_b64decode(token))
    except (ValueError, TypeError) as exc:
        raise InvalidOperation(f"invalid continuation token: {exc}") from exc
    return created_time, instance_id
