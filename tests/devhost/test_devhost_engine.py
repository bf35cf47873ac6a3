"""Engine tests on the virtual clock: replay, tasks, timers, events, persistence."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devhost import (
    InstanceFinished,
    InstanceNotFound,
    UnknownOrchestrator,
    VirtualClock,
    WallClock,
    load_app,
)
from devhost.protocol import EVENT_TYPE_NAMES, EventType

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TESTAPP_DIR = Path(__file__).resolve().parent / "devhost_testapp"


def event_names(history: list[dict]) -> list[str]:
    return [EVENT_TYPE_NAMES[EventType(e["EventType"])] for e in history]


def task_events(history: list[dict]) -> list[tuple[str, int]]:
    """Scheduling and completion events with their sequence ids, in order."""
    keys = {
        EventType.TASK_SCHEDULED: "EventId",
        EventType.TASK_COMPLETED: "TaskScheduledId",
        EventType.TASK_FAILED: "TaskScheduledId",
        EventType.TIMER_CREATED: "EventId",
        EventType.TIMER_FIRED: "TimerId",
    }
    result = []
    for event in history:
        key = keys.get(event["EventType"])
        if key is not None:
            result.append((EVENT_TYPE_NAMES[EventType(event["EventType"])], event[key]))
    return result


def test_chain_output(engine):
    instance_id = engine.start_new("chain", 1)
    engine.run_until_idle()
    status = engine.get_status(instance_id)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == 6
    assert status["input"] == 1


def test_chain_history_shape(engine):
    instance_id = engine.start_new("chain", 1)
    engine.run_until_idle()
    history = engine.get_history(instance_id)
    assert event_names(history)[:2] == ["OrchestratorStarted", "ExecutionStarted"]
    assert history[1]["Version"] == ""
    assert all(e["Timestamp"].endswith("Z") for e in history)
    assert task_events(history) == [
        ("TaskScheduled", 0),
        ("TaskCompleted", 0),
        ("TaskScheduled", 1),
        ("TaskCompleted", 1),
        ("TaskScheduled", 2),
        ("TaskCompleted", 2),
    ]
    assert event_names(history)[-2:] == ["ExecutionCompleted", "OrchestratorCompleted"]


def test_one_new_event_per_episode(engine):
    instance_id = engine.start_new("fan_out", 5)
    engine.run_until_idle()
    history = engine.get_history(instance_id)
    starts = [i for i, e in enumerate(history) if e["EventType"] == 12]
    # Each episode: OrchestratorStarted followed by exactly one new event.
    new_events = [event_names(history)[i + 1] for i in starts]
    assert new_events == ["ExecutionStarted"] + ["TaskCompleted"] * 5


def test_unknown_orchestrator_rejected(engine):
    with pytest.raises(UnknownOrchestrator):
        engine.start_new("missing")


def test_timer_hours_in_milliseconds(make_engine):
    clock = VirtualClock(START)
    engine = make_engine(clock=clock)
    instance_id = engine.start_new("sleeper", 5)
    started = time.monotonic()
    engine.run_until_idle()
    elapsed = time.monotonic() - started
    status = engine.get_status(instance_id)
    assert status["output"] == 5 * 3600
    assert clock.now() == START + timedelta(hours=5)
    assert elapsed < 1.0


def test_timer_history_ids(engine):
    instance_id = engine.start_new("sleeper", 1)
    engine.run_until_idle()
    history = engine.get_history(instance_id)
    assert task_events(history) == [("TimerCreated", 0), ("TimerFired", 0)]


def test_long_timer_split(make_engine):
    clock = VirtualClock(START)
    engine = make_engine(clock=clock)
    instance_id = engine.start_new("sleeper", 24 * 10)
    engine.run_until_idle()
    history = engine.get_history(instance_id)
    fire_times = [
        e["FireAt"] for e in history if e["EventType"] == EventType.TIMER_CREATED
    ]
    assert engine.get_status(instance_id)["output"] == 10 * 86400
    assert fire_times == [
        "2025-03-04T12:00:00.000000Z",
        "2025-03-07T12:00:00.000000Z",
        "2025-03-11T12:00:00.000000Z",
    ]


def test_event_after_wait(engine):
    instance_id = engine.start_new("approval")
    engine.run_until_idle()
    assert engine.get_status(instance_id)["customStatus"] == "waiting"
    engine.raise_event(instance_id, "Approve", '{"ok": true}')
    engine.run_until_idle()
    status = engine.get_status(instance_id)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == {"ok": True}


def test_event_before_wait(engine):
    instance_id = engine.start_new("approval")
    engine.raise_event(instance_id, "Approve", '"early"')
    engine.run_until_idle()
    status = engine.get_status(instance_id)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == "early"


def test_event_unknown_instance(engine):
    with pytest.raises(InstanceNotFound):
        engine.raise_event("nobody", "Approve", "1")


def test_event_finished_instance(engine):
    instance_id = engine.start_new("chain", 1)
    engine.run_until_idle()
    with pytest.raises(InstanceFinished):
        engine.raise_event(instance_id, "Approve", "1")


def test_retry_succeeds_third_attempt(engine, testapp):
    instance_id = engine.start_new("retrying", {"key": "a", "fail_times": 2})
    engine.run_until_idle()
    status = engine.get_status(instance_id)
    assert status["output"] == "ok after 3"
    assert testapp.CALLS["flaky:a"] == 3


def test_retry_history_shape(engine):
    instance_id = engine.start_new("retrying", {"key": "b", "fail_times": 2})
    engine.run_until_idle()
    assert task_events(engine.get_history(instance_id)) == [
        ("TaskScheduled", 0),
        ("TaskFailed", 0),
        ("TimerCreated", 1),
        ("TimerFired", 1),
        ("TaskScheduled", 2),
        ("TaskFailed", 2),
        ("TimerCreated", 3),
        ("TimerFired", 3),
        ("TaskScheduled", 4),
        ("TaskCompleted", 4),
    ]


def test_retry_interval_on_clock(make_engine):
    clock = VirtualClock(START)
    engine = make_engine(clock=clock)
    engine.start_new("retrying", {"key": "c", "fail_times": 1})
    engine.run_until_idle()
    assert clock.now() == START + timedelta(minutes=1)


def test_retry_final_failure(engine, testapp):
    instance_id = engine.start_new("retrying", {"key": "d", "fail_times": 9})
    engine.run_until_idle()
    status = engine.get_status(instance_id)
    history = engine.get_history(instance_id)
    assert status["runtimeStatus"] == "Failed"
    assert "flaky attempt 3 failed" in status["output"]
    assert testapp.CALLS["flaky:d"] == 3
    # After the last failed attempt one more timer fires before the failure.
    assert task_events(history)[-3:] == [
        ("TaskFailed", 4),
        ("TimerCreated", 5),
        ("TimerFired", 5),
    ]


def test_retry_inside_task_all(engine):
    instance_id = engine.start_new("retry_pair", {"key": "f", "fail_times": 1})
    engine.run_until_idle()
    history = engine.get_history(instance_id)
    timers = [
        e["EventId"] for e in history if e["EventType"] == EventType.TIMER_CREATED
    ]
    retried = [
        e["EventId"] for e in history if e["EventType"] == EventType.TASK_SCHEDULED
    ]
    assert engine.get_status(instance_id)["output"] == ["ok after 2", 2]
    assert timers == [2]
    assert retried == [0, 1, 3]


def test_activity_failure_details(engine):
    instance_id = engine.start_new("retrying", {"key": "e", "fail_times": 1})
    engine.run_until_idle()
    failed = next(
        e
        for e in engine.get_history(instance_id)
        if e["EventType"] == EventType.TASK_FAILED
    )
    assert failed["Reason"] == "flaky attempt 1 failed"
    assert "ValueError" in failed["Details"]
    assert "Traceback" in failed["Details"]


def test_race_cancels_timer(make_engine):
    clock = VirtualClock(START)
    engine = make_engine(clock=clock)
    instance_id = engine.start_new("race")
    engine.run_until_idle()
    status = engine.get_status(instance_id)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == 42
    assert clock.now() == START
    assert engine.pending_timers(instance_id) == []


def test_cancelled_timer_disarmed(make_engine):
    clock = VirtualClock(START)
    engine = make_engine(clock=clock)
    instance_id = engine.start_new("race_then_wait")
    engine.run_until_idle()
    assert engine.get_status(instance_id)["runtimeStatus"] == "Running"
    assert engine.pending_timers(instance_id) == []
    assert clock.now() == START


def test_race_history_ids(engine):
    instance_id = engine.start_new("race")
    engine.run_until_idle()
    assert task_events(engine.get_history(instance_id)) == [
        ("TaskScheduled", 0),
        ("TimerCreated", 1),
        ("TaskCompleted", 0),
    ]


def test_fan_out_sum(engine, testapp):
    instance_id = engine.start_new("fan_out", 10)
    engine.run_until_idle()
    assert engine.get_status(instance_id)["output"] == sum(range(1, 11))
    assert testapp.CALLS["add_one"] == 10


def test_fan_out_sequence_ids(engine):
    instance_id = engine.start_new("fan_out", 3)
    engine.run_until_idle()
    scheduled = [
        e["EventId"]
        for e in engine.get_history(instance_id)
        if e["EventType"] == EventType.TASK_SCHEDULED
    ]
    assert scheduled == [0, 1, 2]


def test_sub_orchestrations_output(engine):
    instance_id = engine.start_new("parent", instance_id="p1")
    engine.run_until_idle()
    assert engine.get_status("p1")["output"] == [4, 6]
    assert engine.get_status(instance_id)["runtimeStatus"] == "Completed"


def test_sub_orchestration_ids(engine):
    engine.start_new("parent", instance_id="p2")
    engine.run_until_idle()
    created = [
        (e["EventId"], e["InstanceId"])
        for e in engine.get_history("p2")
        if e["EventType"] == EventType.SUB_ORCHESTRATION_INSTANCE_CREATED
    ]
    assert created == [(0, "p2:child:0"), (1, "p2:child:1")]
    assert engine.get_status("p2:child:1")["output"] == 6


def test_sub_orchestration_failure(engine):
    engine.start_new("parent_of_failing", instance_id="p3")
    engine.run_until_idle()
    output = engine.get_status("p3")["output"]
    assert engine.get_status("p3:child")["runtimeStatus"] == "Failed"
    assert "child gave up" in output


def test_sub_orchestration_retry(engine, testapp):
    engine.start_new(
        "parent_with_retry", {"key": "s", "fail_times": 1}, instance_id="p4"
    )
    engine.run_until_idle()
    kinds = {
        EventType.SUB_ORCHESTRATION_INSTANCE_CREATED: ("Created", "EventId"),
        EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED: (
            "Completed",
            "TaskScheduledId",
        ),
        EventType.SUB_ORCHESTRATION_INSTANCE_FAILED: ("Failed", "TaskScheduledId"),
        EventType.TIMER_CREATED: ("TimerCreated", "EventId"),
        EventType.TIMER_FIRED: ("TimerFired", "TimerId"),
    }
    shape = [
        (kinds[e["EventType"]][0], e[kinds[e["EventType"]][1]])
        for e in engine.get_history("p4")
        if e["EventType"] in kinds
    ]
    assert engine.get_status("p4")["output"] == "ok after 2"
    assert shape == [
        ("Created", 0),
        ("Failed", 0),
        ("TimerCreated", 1),
        ("TimerFired", 1),
        ("Created", 2),
        ("Completed", 2),
    ]
    assert engine.get_status("p4:child")["runtimeStatus"] == "Completed"


def test_continue_as_new_resets_history(engine):
    instance_id = engine.start_new("counter", {"count": 0, "limit": 3})
    engine.run_until_idle()
    status = engine.get_status(instance_id)
    history = engine.get_history(instance_id)
    assert status["output"] == 3
    assert event_names(history) == [
        "OrchestratorStarted",
        "ExecutionStarted",
        "ExecutionCompleted",
        "OrchestratorCompleted",
    ]
    assert status["input"] == {"count": 3, "limit": 3}


def test_continue_as_new_keeps_events(engine):
    instance_id = engine.start_new("event_loop")
    for value in (1, 2, 3):
        engine.raise_event(instance_id, "tick", str(value))
    engine.run_until_idle()
    assert engine.get_status(instance_id)["output"] == [1, 2, 3]


def test_custom_status_steps(engine):
    instance_id = engine.start_new("progress")
    engine.process_messages()
    assert engine.get_status(instance_id)["customStatus"] == {"step": 1}
    engine.run_until_idle()
    assert engine.get_status(instance_id)["customStatus"] == {"step": 2}


def test_orchestrator_exception_fails(engine):
    instance_id = engine.start_new("broken")
    engine.run_until_idle()
    status = engine.get_status(instance_id)
    completed = engine.get_history(instance_id)[-2]
    assert status["runtimeStatus"] == "Failed"
    assert (
        status["output"] == "Orchestrator function 'broken' failed: broken on purpose"
    )
    assert "ValueError" in completed["FailureDetails"]["Details"]


def test_missing_activity_fails(engine):
    instance_id = engine.start_new("missing_activity")
    engine.run_until_idle()
    output = engine.get_status(instance_id)["output"]
    assert "The function 'no_such_activity' doesn't exist" in output


def test_custom_status_limit(engine):
    instance_id = engine.start_new("oversized_status")
    engine.run_until_idle()
    status = engine.get_status(instance_id)
    assert status["runtimeStatus"] == "Failed"
    assert "limit is 16384" in status["output"]


def test_non_determinism_detected(engine, testapp):
    instance_id = engine.start_new("switchable")
    engine.process_messages()
    testapp.USE_SECOND_ACTIVITY = True
    engine.run_until_idle()
    status = engine.get_status(instance_id)
    assert status["runtimeStatus"] == "Failed"
    assert status["output"] == (
        "Non-deterministic orchestration: sequence id 0 was CallActivity 'first' "
        "and is now CallActivity 'second'"
    )


def test_terminate_running(engine):
    instance_id = engine.start_new("approval")
    engine.run_until_idle()
    engine.terminate(instance_id, "no longer needed")
    status = engine.get_status(instance_id)
    assert status["runtimeStatus"] == "Terminated"
    assert status["output"] == "no longer needed"


def test_terminate_finished(engine):
    instance_id = engine.start_new("chain", 1)
    engine.run_until_idle()
    with pytest.raises(InstanceFinished):
        engine.terminate(instance_id, "late")


def test_purge_finished(engine):
    instance_id = engine.start_new("chain", 1)
    engine.run_until_idle()
    assert engine.purge(instance_id) == 1
    assert engine.get_status(instance_id) is None


def test_suspend_holds_events(engine):
    instance_id = engine.start_new("approval")
    engine.run_until_idle()
    engine.suspend(instance_id)
    engine.raise_event(instance_id, "Approve", "1")
    engine.run_until_idle()
    assert engine.get_status(instance_id)["runtimeStatus"] == "Suspended"
    engine.resume(instance_id)
    engine.run_until_idle()
    assert engine.get_status(instance_id)["output"] == 1


def test_restart_replaces_finished(engine):
    engine.start_new("chain", 1, instance_id="same")
    engine.run_until_idle()
    engine.start_new("chain", 10, instance_id="same")
    engine.run_until_idle()
    assert engine.get_status("same")["output"] == 24


def test_rewind_failed_retry(engine, testapp):
    instance_id = engine.start_new("retrying", {"key": "r", "fail_times": 3})
    engine.run_until_idle()
    assert engine.get_status(instance_id)["runtimeStatus"] == "Failed"
    engine.rewind(instance_id, "try again")
    engine.run_until_idle()
    status = engine.get_status(instance_id)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == "ok after 4"


def test_restart_resume(tmp_path, make_engine, testapp):
    data_dir = tmp_path / "resume"
    first = make_engine(data_dir=data_dir, clock=VirtualClock(START))
    timer_id = first.start_new("sleeper", 2)
    fan_id = first.start_new("fan_out", 4)
    first.process_messages()
    assert first.pending_timers(timer_id) == ["2025-03-01T14:00:00.000000Z"]
    first.close()

    second = make_engine(data_dir=data_dir, clock=VirtualClock(START))
    second.run_until_idle()
    history = second.get_history(fan_id)
    completed = [e["TaskScheduledId"] for e in history if e["EventType"] == 5]
    assert second.get_status(timer_id)["runtimeStatus"] == "Completed"
    assert second.get_status(fan_id)["output"] == 10
    assert sorted(completed) == [0, 1, 2, 3]
    assert testapp.CALLS["add_one"] == 4


def test_restart_keeps_committed_result(tmp_path, make_engine, testapp):
    """An activity result committed before the stop is used, not run again."""
    data_dir = tmp_path / "result"
    first = make_engine(data_dir=data_dir)
    instance_id = first.start_new("chain", 1)
    first.process_messages()
    first.run_activities()
    first.close()

    second = make_engine(data_dir=data_dir)
    second.run_until_idle()
    assert second.get_status(instance_id)["output"] == 6
    assert testapp.CALLS["add_one"] == 2


def test_background_dispatcher(make_engine):
    engine = make_engine(clock=WallClock())
    engine.run_in_background()
    instance_id = engine.start_new("chain", 2)
    status = engine.wait_for_status(instance_id, timeout=10)
    assert status["output"] == 8


def test_app_object_accepted(testapp):
    index = load_app(testapp.app, app_dir=TESTAPP_DIR)
    assert index.task_hub == "DevhostTestHub"
    assert index.orchestrator("chain") is not None
