"""Replay tests of the analyze_url sub-orchestration through the real SDK."""

from datetime import timedelta

import pytest

import settings
from enrichment.results import idempotency_tag
from orchestrators.analyze_url import (
    FIRST_CHECK_GRACE_SECONDS,
    MAX_CHECKS_PER_EXECUTION,
    QUOTA_WAIT_SECONDS,
    analyze_url,
)
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
    fire = history.now + timedelta(seconds=timeout + FIRST_CHECK_GRACE_SECONDS)
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
        seconds=options["url_options"]["opt_timeout"] + FIRST_CHECK_GRACE_SECONDS
    )
    assert action["actionType"] == CREATE_TIMER
    assert action["fireAt"] == iso(expected)
    assert state["customStatus"]["state"] == "submitted"
    assert state["customStatus"]["task_url"] == "https://app.any.run/tasks/t-1"


def test_timer_fired_checks_status(history, options):
    submit_and_first_wait(history, options)
    action = last_action(replay(analyze_url, history))
    assert action["functionName"] == "check_analysis"
    assert action_input(action) == {"task_id": "t-1"}


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
        2, "check_analysis", {"state": "running", "remaining": 0}, seconds=margin
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
    # Three failed attempts, each followed by the host's retry timer.
    history.activity_failed(0, "submit_url_analysis", "ANY.RUN submit analysis failed")
    history.retry_timer(1, 5)
    history.activity_failed(2, "submit_url_analysis", "ANY.RUN submit analysis failed")
    history.retry_timer(3, 5)
    history.activity_failed(4, "submit_url_analysis", "ANY.RUN submit analysis failed")
    history.retry_timer(5, 5)
    state = replay(analyze_url, history)
    assert state["isDone"] is True
    assert state["output"]["status"] == "failed"
    assert "submit analysis failed" in state["output"]["reason"]


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
