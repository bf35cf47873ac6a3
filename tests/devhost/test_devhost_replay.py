"""HostReplay on hand-built actions and histories: ids, new work, mismatches."""

from __future__ import annotations

from datetime import UTC, datetime

from devhost.protocol import EventType, new_event
from devhost.replay import HostReplay

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def activity(name: str) -> dict:
    return {"actionType": 0, "functionName": name, "input": "null"}


def retry(name: str, attempts: int = 2) -> dict:
    options = {
        "firstRetryIntervalInMilliseconds": 1000,
        "maxNumberOfAttempts": attempts,
    }
    inner = {
        "actionType": 1,
        "functionName": name,
        "input": "null",
        "retryOptions": options,
    }
    return {"actionType": 12, "compoundActions": [inner]}


def timer(
    fire_at: str = "2025-01-01T01:00:00.000000Z", cancelled: bool = False
) -> dict:
    return {"actionType": 5, "fireAt": fire_at, "isCanceled": cancelled}


def when_all(*children: dict) -> dict:
    return {"actionType": 12, "compoundActions": list(children)}


def when_any(*children: dict) -> dict:
    return {"actionType": 11, "compoundActions": list(children)}


def started() -> list[dict]:
    return [
        new_event(EventType.ORCHESTRATOR_STARTED, NOW),
        new_event(EventType.EXECUTION_STARTED, NOW, Name="o", Input=None, Version=""),
    ]


def scheduled(sequence_id: int, name: str) -> dict:
    return new_event(EventType.TASK_SCHEDULED, NOW, EventId=sequence_id, Name=name)


def timer_created(sequence_id: int) -> dict:
    return new_event(
        EventType.TIMER_CREATED, NOW, EventId=sequence_id, FireAt="2025-01-01T00:00:00Z"
    )


def completed(sequence_id: int) -> dict:
    return new_event(
        EventType.TASK_COMPLETED, NOW, TaskScheduledId=sequence_id, Result="1"
    )


def failed(sequence_id: int) -> dict:
    return new_event(
        EventType.TASK_FAILED, NOW, TaskScheduledId=sequence_id, Reason="x", Details=""
    )


def fired(sequence_id: int) -> dict:
    return new_event(EventType.TIMER_FIRED, NOW, TimerId=sequence_id)


def new_ids(replay: HostReplay) -> list[tuple[int, str]]:
    return [(work.sequence_id, work.kind) for work in replay.new_work]


def test_first_episode_new_work():
    replay = HostReplay([activity("a")], started(), NOW).run()
    assert new_ids(replay) == [(0, "activity")]
    assert replay.error is None


def test_recorded_task_not_new():
    history = [*started(), scheduled(0, "a"), completed(0)]
    replay = HostReplay([activity("a"), activity("b")], history, NOW).run()
    assert new_ids(replay) == [(1, "activity")]


def test_nested_compound_ids():
    actions = [when_all(when_any(activity("a"), timer()), activity("b"))]
    replay = HostReplay(actions, started(), NOW).run()
    assert new_ids(replay) == [(0, "activity"), (1, "timer"), (2, "activity")]


def test_external_event_takes_no_id():
    wait = {"actionType": 6, "externalEventName": "e", "reason": "ExternalEvent"}
    replay = HostReplay([when_any(wait, timer())], started(), NOW).run()
    assert new_ids(replay) == [(0, "timer")]


def test_retry_timer_after_failure():
    history = [*started(), scheduled(0, "a"), failed(0)]
    replay = HostReplay([retry("a")], history, NOW).run()
    assert new_ids(replay) == [(1, "timer")]
    assert replay.new_work[0].fire_at == datetime(2025, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_retry_reattempt_after_timer():
    history = [*started(), scheduled(0, "a"), failed(0), timer_created(1), fired(1)]
    replay = HostReplay([retry("a")], history, NOW).run()
    assert new_ids(replay) == [(2, "activity")]


def test_retry_extra_timer_then_next():
    history = [
        *started(),
        scheduled(0, "a"),
        failed(0),
        timer_created(1),
        fired(1),
        scheduled(2, "a"),
        failed(2),
        timer_created(3),
        fired(3),
    ]
    # The retry has failed for good; the orchestrator caught it and moved on.
    replay = HostReplay([retry("a"), activity("b")], history, NOW).run()
    assert new_ids(replay) == [(4, "activity")]


def test_cancelled_timer_reported():
    history = [*started(), scheduled(0, "a"), timer_created(1), completed(0)]
    actions = [when_any(activity("a"), timer(cancelled=True))]
    replay = HostReplay(actions, history, NOW).run()
    assert replay.cancelled_timer_ids == {1}
    assert replay.new_work == []


def test_mismatch_activity_name():
    history = [*started(), scheduled(0, "a")]
    replay = HostReplay([activity("b")], history, NOW).run()
    assert replay.mismatch
    assert replay.error == (
        "Non-deterministic orchestration: sequence id 0 was CallActivity 'a' "
        "and is now CallActivity 'b'"
    )


def test_mismatch_timer_for_activity():
    history = [*started(), timer_created(0)]
    replay = HostReplay([activity("a")], history, NOW).run()
    assert replay.error == (
        "Non-deterministic orchestration: sequence id 0 was CreateTimer "
        "and is now CallActivity 'a'"
    )


def test_completion_never_scheduled():
    history = [*started(), scheduled(0, "a"), completed(0), completed(1)]
    replay = HostReplay([activity("a")], history, NOW).run()
    assert not replay.mismatch
    assert "sequence id 1, which the orchestrator no longer schedules" in replay.error


def test_unsupported_action():
    call_http = {"actionType": 8, "httpRequest": {"method": "GET", "uri": "x"}}
    replay = HostReplay([call_http], started(), NOW).run()
    assert replay.error == "devhost does not support call_http (action type 8)"


def test_buffered_event_consumed():
    raised = new_event(EventType.EVENT_RAISED, NOW, Name="go", Input="1")
    wait = {"actionType": 6, "externalEventName": "go", "reason": "ExternalEvent"}
    history = [*started(), raised]
    replay = HostReplay([wait, activity("a")], history, NOW).run()
    assert replay.unconsumed_events == []
    assert new_ids(replay) == [(0, "activity")]


def test_unconsumed_event_kept():
    raised = new_event(EventType.EVENT_RAISED, NOW, Name="later", Input="1")
    replay = HostReplay([activity("a")], [*started(), raised], NOW).run()
    assert [e["Name"] for e in replay.unconsumed_events] == ["later"]


def event_wait(name: str = "Uploaded") -> dict:
    return {"actionType": 6, "externalEventName": name, "reason": "ExternalEvent"}


def raised(name: str = "Uploaded") -> dict:
    return new_event(EventType.EVENT_RAISED, NOW, Name=name, Input='"blob"')


def test_event_reused_in_second_task_any():
    # An event task yielded again in a later task_any is left out of that
    # compound's actions, because the SDK emitted its action the first time.
    actions = [
        when_any(event_wait(), timer()),
        activity("check"),
        when_any(timer(cancelled=True)),
        activity("submit"),
    ]
    history = [
        *started(),
        timer_created(0),
        fired(0),
        scheduled(1, "check"),
        completed(1),
        timer_created(2),
        raised(),
        scheduled(3, "submit"),
        completed(3),
    ]
    replay = HostReplay(actions, history, NOW).run()
    assert replay.error is None
    assert new_ids(replay) == []
    assert replay.cancelled_timer_ids == {2}
    assert replay.unconsumed_events == []


def test_event_reused_schedules_next_work():
    actions = [
        when_any(event_wait(), timer()),
        activity("check"),
        when_any(timer(cancelled=True)),
        activity("submit"),
    ]
    history = [
        *started(),
        timer_created(0),
        fired(0),
        scheduled(1, "check"),
        completed(1),
        timer_created(2),
        raised(),
    ]
    replay = HostReplay(actions, history, NOW).run()
    assert replay.error is None
    assert new_ids(replay) == [(3, "activity")]


def test_activity_reused_in_second_task_any():
    actions = [
        when_any(activity("work"), timer()),
        when_any(timer(cancelled=True)),
        activity("after"),
    ]
    history = [
        *started(),
        scheduled(0, "work"),
        timer_created(1),
        fired(1),
        timer_created(2),
        completed(0),
        scheduled(3, "after"),
        completed(3),
    ]
    replay = HostReplay(actions, history, NOW).run()
    assert replay.error is None
    assert new_ids(replay) == []


def test_unscheduled_completion_still_detected():
    actions = [when_any(event_wait(), timer()), activity("check")]
    history = [
        *started(),
        timer_created(0),
        fired(0),
        scheduled(1, "check"),
        completed(1),
        completed(5),
    ]
    replay = HostReplay(actions, history, NOW).run()
    assert "sequence id 5" in replay.error


def test_duplicate_event_left_unconsumed():
    actions = [
        when_any(event_wait(), timer(cancelled=True)),
        activity("submit"),
        timer(),
    ]
    history = [
        *started(),
        timer_created(0),
        raised(),
        raised(),
        scheduled(1, "submit"),
        completed(1),
    ]
    replay = HostReplay(actions, history, NOW).run()
    assert replay.error is None
    assert new_ids(replay) == [(2, "timer")]
    assert [event["Name"] for event in replay.unconsumed_events] == ["Uploaded"]
