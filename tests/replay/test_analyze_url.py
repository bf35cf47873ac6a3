"""Replay tests of the analyze_url sub-orchestration through the real SDK."""

from datetime import timedelta

import pytest

import settings
from enrichment.results import idempotency_tag
from orchestrators.analyze_url import (
    ACTIVITY_RETRY,
    MAX_CHECKS_PER_EXECUTION,
    QUOTA_WAIT_SECONDS,
    STREAM_LEAD_SECONDS,
    analyze_url,
)
from orchestrators.sandbox import REPORT_ATTEMPTS, REPORT_RETRY_SECONDS
from tests.replay.history import (
    CALL_ACTIVITY_WITH_RETRY,
    CONTINUE_AS_NEW,
    CREATE_TIMER,
    History,
    action_input,
    flat_actions,
    iso,
    last_action,
    replay,
)

INSTANCE = "inc-abc-123:url-1"
URL = "https://login.microsoftonline.example.net/x"
SUBMITTED = {"status": "submitted", "task_id": "t-1", "reused": False}
REPORT = {
    "status": "done",
    "task_id": "t-1",
    "task_url": "https://app.any.run/tasks/t-1",
    "verdict": "malicious",
    "verdict_text": "Malicious activity",
    "score": 100,
    "tags": ["phishing"],
    "iocs": [],
    "indicator_iocs": [],
}


@pytest.fixture
def options():
    return settings.load({"ANYRUN_API_KEY": "k"}).plan_options()


@pytest.fixture
def history(options):
    job = {"key": "url-1", "object": URL, "options": options}
    return History("analyze_url", job, instance_id=INSTANCE)


def submit_and_first_wait(history, options):
    history.activity(0, "submit_url_analysis", SUBMITTED)
    timeout = options["url_options"]["opt_timeout"]
    fire = history.now + timedelta(seconds=timeout - STREAM_LEAD_SECONDS)
    history.timer(1, fire)
    return fire


def test_first_episode_submits_with_tag(history):
    action = last_action(replay(analyze_url, history))
    assert action["actionType"] == CALL_ACTIVITY_WITH_RETRY
    assert action["functionName"] == "submit_url_analysis"
    assert action_input(action)["tag"] == idempotency_tag(INSTANCE)


def test_tag_fits_sandbox_limit():
    tag = idempotency_tag(INSTANCE)
    assert len(tag) <= 16
    assert tag.replace("-", "").isalnum()


def test_submission_schedules_timer_at_timeout(history, options):
    history.activity(0, "submit_url_analysis", SUBMITTED)
    state = replay(analyze_url, history)
    action = last_action(state)
    expected = history.now + timedelta(
        seconds=options["url_options"]["opt_timeout"] - STREAM_LEAD_SECONDS
    )
    assert action["actionType"] == CREATE_TIMER
    assert action["fireAt"] == iso(expected)
    assert state["customStatus"]["state"] == "submitted"
    assert state["customStatus"]["task_url"] == "https://app.any.run/tasks/t-1"


def test_timer_fired_checks_status(history, options):
    submit_and_first_wait(history, options)
    action = last_action(replay(analyze_url, history))
    assert action["functionName"] == "check_analysis"
    assert action_input(action) == {"task_id": "t-1", "follow": True}


def test_running_waits_remaining_seconds(history, options):
    submit_and_first_wait(history, options)
    history.activity(2, "check_analysis", {"state": "running", "remaining": 40})
    state = replay(analyze_url, history)
    action = last_action(state)
    assert action["actionType"] == CREATE_TIMER
    assert action["fireAt"] == iso(history.now + timedelta(seconds=40))
    assert state["customStatus"]["state"] == "waiting"
    assert state["customStatus"]["remaining"] == 40


def test_zero_remaining_backs_off(history, options):
    submit_and_first_wait(history, options)
    minimum = options["status_check_min_seconds"]
    history.activity(2, "check_analysis", {"state": "running", "remaining": 0})
    history.timer(3, history.now + timedelta(seconds=minimum))
    history.activity(4, "check_analysis", {"state": "running", "remaining": 0})
    action = last_action(replay(analyze_url, history))
    assert action["fireAt"] == iso(history.now + timedelta(seconds=2 * minimum))


def test_done_reads_report(history, options):
    submit_and_first_wait(history, options)
    history.activity(2, "check_analysis", {"state": "done", "remaining": 0})
    action = last_action(replay(analyze_url, history))
    assert action["functionName"] == "fetch_analysis_report"
    assert action_input(action)["task_id"] == "t-1"


def test_report_completes_with_verdict(history, options):
    submit_and_first_wait(history, options)
    history.activity(2, "check_analysis", {"state": "done", "remaining": 0})
    history.activity(3, "fetch_analysis_report", REPORT)
    state = replay(analyze_url, history)
    assert state["isDone"] is True
    assert state["output"]["status"] == "done"
    assert state["output"]["verdict"] == "malicious"
    assert state["output"]["object"] == URL
    assert state["output"]["task_url"] == "https://app.any.run/tasks/t-1"


NOT_READY = {"status": "not_ready", "reason": "404 Task not found", "task_id": "t-1"}


def test_report_not_ready_waits_and_reads_again(history, options):
    submit_and_first_wait(history, options)
    history.activity(2, "check_analysis", {"state": "done", "remaining": 0})
    history.activity(3, "fetch_analysis_report", NOT_READY)
    state = replay(analyze_url, history)
    assert state["isDone"] is False
    action = last_action(state)
    assert action["actionType"] == CREATE_TIMER
    assert action["fireAt"] == iso(
        history.now + timedelta(seconds=REPORT_RETRY_SECONDS)
    )

    history.timer(4, history.now + timedelta(seconds=REPORT_RETRY_SECONDS))
    action = last_action(replay(analyze_url, history))
    assert action["functionName"] == "fetch_analysis_report"
    history.activity(5, "fetch_analysis_report", REPORT)
    state = replay(analyze_url, history)
    assert state["output"]["status"] == "done"
    assert state["output"]["verdict"] == "malicious"


def test_report_never_ready_fails_with_reason(history, options):
    submit_and_first_wait(history, options)
    history.activity(2, "check_analysis", {"state": "done", "remaining": 0})
    event = 3
    for attempt in range(1, REPORT_ATTEMPTS + 1):
        history.activity(event, "fetch_analysis_report", NOT_READY)
        event += 1
        if attempt < REPORT_ATTEMPTS:
            history.timer(event, history.now + timedelta(seconds=REPORT_RETRY_SECONDS))
            event += 1
    state = replay(analyze_url, history)
    assert state["isDone"] is True
    assert state["output"]["status"] == "failed"
    assert f"no report after {REPORT_ATTEMPTS} attempts" in state["output"]["reason"]
    assert "404 Task not found" in state["output"]["reason"]


def test_url_analysis_history_is_small(history, options):
    submit_and_first_wait(history, options)
    history.activity(2, "check_analysis", {"state": "done", "remaining": 0})
    history.activity(3, "fetch_analysis_report", REPORT)
    assert replay(analyze_url, history)["isDone"] is True
    assert len(history.events) <= 40


def test_failed_task_is_reported(history, options):
    submit_and_first_wait(history, options)
    history.activity(2, "check_analysis", {"state": "failed", "remaining": 0})
    state = replay(analyze_url, history)
    assert state["output"]["status"] == "failed"
    assert state["output"]["task_id"] == "t-1"


def test_deadline_ends_as_timed_out(history, options):
    submit_and_first_wait(history, options)
    margin = options["deadline_margin_seconds"]
    history.activity(
        2, "check_analysis", {"state": "running", "remaining": 0}, seconds=margin + 10
    )
    state = replay(analyze_url, history)
    assert state["isDone"] is True
    assert state["output"]["status"] == "timed_out"


def test_wait_never_passes_deadline(history, options):
    submit_and_first_wait(history, options)
    history.activity(2, "check_analysis", {"state": "running", "remaining": 100_000})
    state = replay(analyze_url, history)
    assert last_action(state)["fireAt"] == iso_deadline(state)


def iso_deadline(state):
    from datetime import datetime

    return iso(datetime.fromisoformat(state["customStatus"]["deadline"]))


def test_throttled_submission_waits_then_retries(history):
    throttled = {
        "status": "throttled",
        "reason": "Limits exceeded",
        "retry_after": None,
    }
    history.activity(0, "submit_url_analysis", throttled)
    state = replay(analyze_url, history)
    assert last_action(state)["fireAt"] == iso(
        history.now + timedelta(seconds=QUOTA_WAIT_SECONDS)
    )
    assert state["customStatus"]["state"] == "waiting_for_quota"
    history.timer(1, history.now + timedelta(seconds=QUOTA_WAIT_SECONDS))
    assert (
        last_action(replay(analyze_url, history))["functionName"]
        == "submit_url_analysis"
    )


def test_rejected_submission_fails(history):
    history.activity(
        0, "submit_url_analysis", {"status": "rejected", "reason": "obj_url: bad"}
    )
    state = replay(analyze_url, history)
    assert state["isDone"] is True
    assert state["output"]["status"] == "failed"
    assert state["output"]["reason"] == "obj_url: bad"


def test_activity_error_after_retries_is_data(history):
    # Every attempt fails, each followed by the host's retry timer.
    interval = ACTIVITY_RETRY.first_retry_interval_in_milliseconds / 1000
    event = 0
    for _ in range(ACTIVITY_RETRY.max_number_of_attempts):
        history.activity_failed(
            event, "submit_url_analysis", "ANY.RUN submit analysis failed"
        )
        history.retry_timer(event + 1, interval)
        event += 2
    state = replay(analyze_url, history)
    assert state["isDone"] is True
    assert state["output"]["status"] == "failed"
    assert "submit analysis failed" in state["output"]["reason"]


def test_activity_error_retried_before_giving_up(history):
    interval = ACTIVITY_RETRY.first_retry_interval_in_milliseconds / 1000
    event = 0
    for _ in range(ACTIVITY_RETRY.max_number_of_attempts - 1):
        history.activity_failed(
            event, "submit_url_analysis", "ANY.RUN submit analysis failed"
        )
        history.retry_timer(event + 1, interval)
        event += 2
    state = replay(analyze_url, history)
    assert state["isDone"] is False


def test_long_wait_continues_as_new(history, options):
    submit_and_first_wait(history, options)
    seq = 2
    for _ in range(MAX_CHECKS_PER_EXECUTION - 1):
        history.activity(seq, "check_analysis", {"state": "running", "remaining": 30})
        history.timer(seq + 1, history.now + timedelta(seconds=30))
        seq += 2
    history.activity(seq, "check_analysis", {"state": "running", "remaining": 30})
    state = replay(analyze_url, history)
    action = last_action(state)
    assert action["actionType"] == CONTINUE_AS_NEW
    carried = action_input(action)["state"]
    assert carried["task_id"] == "t-1"
    assert carried["next_check_at"]


def test_continued_execution_resumes_waiting(options):
    from datetime import datetime

    state = {
        "task_id": "t-9",
        "task_url": "https://app.any.run/tasks/t-9",
        "deadline": "2026-11-30T09:00:00+00:00",
        "next_check_at": "2026-11-30T08:30:00+00:00",
        "remaining": 30,
        "zero_checks": 0,
        "checked": True,
    }
    job = {"key": "url-1", "object": URL, "options": options, "state": state}
    result = replay(analyze_url, History("analyze_url", job, instance_id=INSTANCE))
    actions = flat_actions(result)
    assert len(actions) == 1
    assert actions[0]["fireAt"] == iso(datetime.fromisoformat(state["next_check_at"]))


@pytest.fixture
def table_options():
    return settings.load(
        {
            "ANYRUN_API_KEY": "k",
            "ANALYSIS_TABLE_ENDPOINT": "https://stexample.table.core.windows.net",
        }
    ).plan_options()


@pytest.fixture
def table_history(table_options):
    job = {"key": "url-1", "object": URL, "options": table_options}
    return History("analyze_url", job, instance_id=INSTANCE)


def test_submission_carries_record(table_history, table_options):
    action = last_action(replay(analyze_url, table_history))
    record = action_input(action)["record"]
    assert record["owner"] == INSTANCE
    assert record["key"].startswith("url-")
    assert record["now"] == table_history.now.isoformat()
    assert record["window_hours"] == table_options["reuse_window_hours"]


def test_record_key_per_instance_without_reuse(table_options):
    job = {
        "key": "url-1",
        "object": URL,
        "options": {**table_options, "reuse_window_hours": 0},
    }
    history = History("analyze_url", job, instance_id=INSTANCE)
    record = action_input(last_action(replay(analyze_url, history)))["record"]
    assert record["key"] == "tag-" + idempotency_tag(INSTANCE)


def test_owner_check_releases_slot(table_history, table_options):
    table_history.activity(0, "submit_url_analysis", {**SUBMITTED, "slot": 3})
    timeout = table_options["url_options"]["opt_timeout"]
    table_history.timer(
        1, table_history.now + timedelta(seconds=timeout - STREAM_LEAD_SECONDS)
    )
    check = action_input(last_action(replay(analyze_url, table_history)))
    assert check["release"]["owner"] == INSTANCE
    assert check["release"]["key"].startswith("url-")
    assert check["release"]["slot"] == 3
    assert check["follow"] is True


def test_reused_done_task_reads_report(table_history):
    reused = {
        "status": "reused",
        "task_id": "t-7",
        "done": True,
        "expected_end": iso(table_history.now),
        "owner": "inc-other:url-1",
    }
    table_history.activity(0, "submit_url_analysis", reused)
    action = last_action(replay(analyze_url, table_history))
    assert action["functionName"] == "fetch_analysis_report"
    assert action_input(action)["task_id"] == "t-7"


def test_reused_running_task_checked_at_its_end(table_history):
    from datetime import datetime

    end = table_history.now + timedelta(seconds=50)
    reused = {
        "status": "reused",
        "task_id": "t-7",
        "done": False,
        "expected_end": end.isoformat(),
        "owner": "inc-other:url-1",
    }
    table_history.activity(0, "submit_url_analysis", reused)
    state = replay(analyze_url, table_history)
    action = last_action(state)
    assert action["actionType"] == CREATE_TIMER
    fire = end - timedelta(seconds=STREAM_LEAD_SECONDS)
    assert action["fireAt"] == iso(fire)
    table_history.timer(
        1, datetime.fromisoformat(state["customStatus"]["next_check_at"])
    )
    check = action_input(last_action(replay(analyze_url, table_history)))
    assert "release" not in check


def test_no_slot_waits_until_retry_time(table_history):
    retry_at = table_history.now + timedelta(seconds=90)
    answer = {
        "status": "no_slot",
        "reason": "all 2 sandbox slots are in use",
        "retry_at": retry_at.isoformat(),
    }
    table_history.activity(0, "submit_url_analysis", answer)
    state = replay(analyze_url, table_history)
    assert last_action(state)["fireAt"] == iso(retry_at)
    assert state["customStatus"]["state"] == "waiting_for_slot"
    assert state["customStatus"]["reason"] == "all 2 sandbox slots are in use"


def test_pending_claim_backs_off(table_history, table_options):
    minimum = table_options["status_check_min_seconds"]
    pending = {"status": "pending", "reason": "another incident is submitting"}
    table_history.activity(0, "submit_url_analysis", pending)
    table_history.timer(1, table_history.now + timedelta(seconds=minimum))
    table_history.activity(2, "submit_url_analysis", pending)
    state = replay(analyze_url, table_history)
    assert last_action(state)["fireAt"] == iso(
        table_history.now + timedelta(seconds=2 * minimum)
    )
    assert state["customStatus"]["state"] == "waiting_for_analysis"


def test_retry_sends_current_time(table_history):
    table_history.activity(0, "submit_url_analysis", {"status": "pending"})
    table_history.timer(1, table_history.now + timedelta(seconds=5))
    action = last_action(replay(analyze_url, table_history))
    assert action_input(action)["record"]["now"] == table_history.now.isoformat()


def test_pending_past_deadline_times_out(table_history, table_options):
    margin = table_options["deadline_margin_seconds"]
    table_history.activity(
        0, "submit_url_analysis", {"status": "pending", "reason": "x"}, seconds=margin
    )
    state = replay(analyze_url, table_history)
    assert state["isDone"] is True
    assert state["output"]["status"] == "timed_out"


def test_many_slot_waits_continue_as_new(table_history):
    retry = {"status": "no_slot", "reason": "full", "retry_at": None}
    seq = 0
    for _ in range(MAX_CHECKS_PER_EXECUTION - 1):
        table_history.activity(seq, "submit_url_analysis", retry)
        table_history.timer(seq + 1, table_history.now + timedelta(seconds=5))
        seq += 2
    table_history.activity(seq, "submit_url_analysis", retry)
    table_history.timer(seq + 1, table_history.now + timedelta(seconds=5))
    action = last_action(replay(analyze_url, table_history))
    assert action["actionType"] == CONTINUE_AS_NEW
    assert action_input(action)["state"]["submit_deadline"]


def test_history_with_records_is_small(table_history, table_options):
    submit_and_first_wait(table_history, table_options)
    table_history.activity(2, "check_analysis", {"state": "done", "remaining": 0})
    table_history.activity(3, "fetch_analysis_report", REPORT)
    assert replay(analyze_url, table_history)["isDone"] is True
    assert len(table_history.events) <= 40


@pytest.mark.parametrize(
    ("policy", "first", "interval"),
    [("fixed", 130, 60), ("poll", 10, 10)],
)
def test_baseline_wait_policies(options, policy, first, interval):
    job = {"key": "url-1", "object": URL, "options": {**options, "wait_policy": policy}}
    history = History("analyze_url", job, instance_id=INSTANCE)
    history.activity(0, "submit_url_analysis", SUBMITTED)
    assert last_action(replay(analyze_url, history))["fireAt"] == iso(
        history.now + timedelta(seconds=first)
    )
    history.timer(1, history.now + timedelta(seconds=first))
    history.activity(2, "check_analysis", {"state": "running", "remaining": 40})
    assert last_action(replay(analyze_url, history))["fireAt"] == iso(
        history.now + timedelta(seconds=interval)
    )
