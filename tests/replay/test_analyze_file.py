"""Replay tests of the analyze_file sub-orchestration through the real SDK."""

import json
from datetime import timedelta

import pytest

import settings
from enrichment.uploads import UPLOAD_EVENT
from orchestrators.analyze_file import (
    DEVICE_BUSY_WAIT_SECONDS,
    FIRST_ACTION_CHECK_SECONDS,
    UPLOAD_REQUESTS,
    UPLOAD_RETRY_WAIT_SECONDS,
    analyze_file,
)
from tests.replay.history import (
    CREATE_TIMER,
    EVENT_RAISED,
    History,
    action_input,
    flat_actions,
    iso,
    last_action,
    replay,
)

INSTANCE = "inc-abc-123:file-0123456789abcdef"
SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
SOURCE = {
    "status": "ok",
    "device_id": "0" * 32 + "deadbeef",
    "host": "lx-0042",
    "os": "linux",
    "path": "/home/azureuser/eicar.com",
    "sha256": SHA256,
    "sha1": None,
}
BLOB = f"{INSTANCE}/{SHA256}"
REQUESTED = {"status": "requested", "action_id": "a-1", "blob": BLOB}


@pytest.fixture
def options():
    env = {
        "ANYRUN_API_KEY": "k",
        "UPLOAD_BLOB_ENDPOINT": "https://acct.blob.core.windows.net",
    }
    return settings.load(env).plan_options()


@pytest.fixture
def history(options):
    job = {
        "key": "file-0123456789abcdef",
        "kind": "file",
        "object": "/home/azureuser/eicar.com",
        "file": {
            "file_name": "eicar.com",
            "directory": "/home/azureuser",
            "sha256": SHA256,
        },
        "options": options,
    }
    return History("analyze_file", job, instance_id=INSTANCE)


def up_to_request(history):
    history.activity(0, "resolve_file_source", SOURCE)
    history.activity(
        1, "ensure_live_response_script", {"status": "ok", "script": "anyrun-upload.sh"}
    )


def raise_event(history, seconds=2.0):
    history.episode(seconds)
    history._add(
        EVENT_RAISED,
        Name=UPLOAD_EVENT,
        Input=json.dumps({"blob": BLOB, "size": 68, "sha256": SHA256}),
    )


def test_files_off_without_upload_endpoint(history):
    history.input["options"]["files_enabled"] = False
    history.events[1]["Input"] = json.dumps(history.input)
    state = replay(analyze_file, history)
    assert state["output"]["status"] == "unavailable"
    assert "UPLOAD_BLOB_ENDPOINT" in state["output"]["reason"]


def test_first_step_resolves_source(history):
    action = last_action(replay(analyze_file, history))
    assert action["functionName"] == "resolve_file_source"
    assert action_input(action)["sha256"] == SHA256


def test_unavailable_source_ends_with_reason(history):
    history.activity(
        0, "resolve_file_source", {"status": "unavailable", "reason": "no device"}
    )
    state = replay(analyze_file, history)
    assert state["output"]["status"] == "unavailable"
    assert state["output"]["reason"] == "no device"


def test_upload_requested_with_deadline(history, options):
    up_to_request(history)
    action = last_action(replay(analyze_file, history))
    payload = action_input(action)
    expected = history.now + timedelta(minutes=options["upload_deadline_minutes"])
    assert action["functionName"] == "request_file_upload"
    assert payload["instance_id"] == INSTANCE
    assert payload["expires_at"] == expected.isoformat()
    assert "url" not in payload


def test_busy_device_waits_and_retries(history):
    up_to_request(history)
    history.activity(
        2,
        "request_file_upload",
        {"status": "busy", "reason": "ActiveRequestAlreadyExists"},
    )
    state = replay(analyze_file, history)
    action = last_action(state)
    assert action["actionType"] == CREATE_TIMER
    assert action["fireAt"] == iso(
        history.now + timedelta(seconds=DEVICE_BUSY_WAIT_SECONDS)
    )
    assert state["customStatus"]["state"] == "waiting_for_device"
    history.timer(3, history.now + timedelta(seconds=DEVICE_BUSY_WAIT_SECONDS))
    assert (
        last_action(replay(analyze_file, history))["functionName"]
        == "request_file_upload"
    )


def test_rejected_request_fails(history):
    up_to_request(history)
    history.activity(
        2,
        "request_file_upload",
        {"status": "rejected", "reason": "DisallowedOperation"},
    )
    state = replay(analyze_file, history)
    assert state["output"]["status"] == "failed"
    assert "DisallowedOperation" in state["output"]["reason"]


def test_waits_on_event_or_timer(history):
    up_to_request(history)
    history.activity(2, "request_file_upload", REQUESTED)
    state = replay(analyze_file, history)
    actions = flat_actions(state)
    assert actions[-2]["actionType"] == 6  # WaitForExternalEvent
    assert actions[-2]["externalEventName"] == UPLOAD_EVENT
    assert actions[-1]["fireAt"] == iso(
        history.now + timedelta(seconds=FIRST_ACTION_CHECK_SECONDS)
    )
    assert state["customStatus"]["state"] == "waiting_for_upload"


def test_upload_event_submits_and_cancels_timer(history):
    up_to_request(history)
    history.activity(2, "request_file_upload", REQUESTED)
    raise_event(history)
    state = replay(analyze_file, history)
    actions = flat_actions(state)
    timer = [a for a in actions if a["actionType"] == CREATE_TIMER][0]
    assert timer["isCanceled"] is True
    assert actions[-1]["functionName"] == "submit_file_analysis"
    payload = action_input(actions[-1])
    assert payload["blob"] == BLOB
    assert payload["options"]["env_os"] == "linux"
    assert payload["tag"].startswith("snt-")


def test_hash_mismatch_reported(history):
    up_to_request(history)
    history.activity(2, "request_file_upload", REQUESTED)
    raise_event(history)
    history.activity(
        4,
        "submit_file_analysis",
        {"status": "hash_mismatch", "reason": "SHA-256 differs"},
    )
    state = replay(analyze_file, history)
    assert state["output"]["status"] == "failed"
    assert state["output"]["reason"] == "SHA-256 differs"


def timer_then_check(history, seq, check, seconds):
    history.timer(seq, history.now + timedelta(seconds=seconds))
    history.activity(seq + 1, "check_upload_action", check)


def test_failed_action_reports_script_reason(history):
    up_to_request(history)
    history.activity(2, "request_file_upload", REQUESTED)
    check = {
        "state": "Failed",
        "blob_exists": False,
        "script": {
            "status": "failed",
            "reason": "file_not_found",
            "message": "no such file",
        },
    }
    timer_then_check(history, 3, check, FIRST_ACTION_CHECK_SECONDS)
    state = replay(analyze_file, history)
    assert state["output"]["status"] == "failed"
    assert "no such file (file_not_found)" in state["output"]["reason"]


def test_blob_without_event_is_submitted(history):
    up_to_request(history)
    history.activity(2, "request_file_upload", REQUESTED)
    timer_then_check(
        history, 3, {"state": "Succeeded", "blob_exists": True, "size": 68}, 30
    )
    assert (
        last_action(replay(analyze_file, history))["functionName"]
        == "submit_file_analysis"
    )


def test_offline_device_cancelled_at_deadline(history, options):
    up_to_request(history)
    history.activity(2, "request_file_upload", REQUESTED)
    deadline = history.now + timedelta(minutes=options["upload_deadline_minutes"])
    seq, interval = 3, FIRST_ACTION_CHECK_SECONDS
    pending = {"state": "Pending", "blob_exists": False}
    while history.now + timedelta(seconds=interval) < deadline:
        timer_then_check(history, seq, pending, interval)
        seq += 2
        interval = min(interval * 2, 300)
        action = last_action(replay(analyze_file, history))
        assert action["actionType"] == CREATE_TIMER
    remaining = (deadline - history.now).total_seconds()
    history.timer(seq, deadline)
    history.activity(seq + 1, "check_upload_action", pending)
    action = last_action(replay(analyze_file, history))
    assert action["functionName"] == "cancel_upload_action"
    assert action_input(action)["action_id"] == "a-1"
    history.activity(seq + 2, "cancel_upload_action", {"status": "cancelled"})
    state = replay(analyze_file, history)
    assert remaining > 0
    assert state["output"]["status"] == "timed_out"
    assert "was cancelled" in state["output"]["reason"]


def test_submitted_file_waits_for_report(history, options):
    up_to_request(history)
    history.activity(2, "request_file_upload", REQUESTED)
    raise_event(history)
    history.activity(
        4, "submit_file_analysis", {"status": "submitted", "task_id": "t-9"}
    )
    action = last_action(replay(analyze_file, history))
    timeout = options["file_options"]["linux"]["opt_timeout"]
    assert action["actionType"] == CREATE_TIMER
    assert action["fireAt"] == iso(history.now + timedelta(seconds=timeout - 5))


def test_done_file_result_carries_host(history):
    up_to_request(history)
    history.activity(2, "request_file_upload", REQUESTED)
    raise_event(history)
    history.activity(
        4, "submit_file_analysis", {"status": "submitted", "task_id": "t-9"}
    )
    history.timer(5, history.now + timedelta(seconds=243))
    history.activity(6, "check_analysis", {"state": "done", "remaining": 0})
    history.activity(
        7, "fetch_analysis_report", {"status": "done", "verdict": "malicious"}
    )
    output = replay(analyze_file, history)["output"]
    assert output["status"] == "done"
    assert output["host"] == "lx-0042"
    assert output["sha256"] == SHA256


@pytest.fixture
def table_history(options):
    job = {
        "key": "file-0123456789abcdef",
        "kind": "file",
        "object": "/home/azureuser/eicar.com",
        "file": {
            "file_name": "eicar.com",
            "directory": "/home/azureuser",
            "sha256": SHA256,
            "os_family": "linux",
            "host_name": "lx-0042",
        },
        "options": {**options, "records_enabled": True},
    }
    return History("analyze_file", job, instance_id=INSTANCE)


def test_known_hash_reserved_before_fetch(table_history):
    action = last_action(replay(analyze_file, table_history))
    assert action["functionName"] == "reserve_analysis"
    record = action_input(action)["record"]
    assert record["object"] == SHA256
    assert record["owner"] == INSTANCE


def test_reused_file_is_not_fetched(table_history):
    reused = {
        "status": "reused",
        "task_id": "t-5",
        "done": True,
        "expected_end": iso(table_history.now),
        "owner": "inc-other:file-1",
    }
    table_history.activity(0, "reserve_analysis", reused)
    names = [
        a.get("functionName") for a in flat_actions(replay(analyze_file, table_history))
    ]
    assert names[-1] == "fetch_analysis_report"
    assert "resolve_file_source" not in names


def test_owned_file_is_fetched(table_history):
    table_history.activity(0, "reserve_analysis", {"status": "owned"})
    action = last_action(replay(analyze_file, table_history))
    assert action["functionName"] == "resolve_file_source"


def test_unfetched_file_releases_claim(table_history):
    table_history.activity(0, "reserve_analysis", {"status": "owned"})
    table_history.activity(
        1, "resolve_file_source", {"status": "unavailable", "reason": "offline"}
    )
    action = last_action(replay(analyze_file, table_history))
    assert action["functionName"] == "release_analysis"
    assert action_input(action)["owner"] == INSTANCE


def test_file_submission_carries_same_record(table_history):
    table_history.activity(0, "reserve_analysis", {"status": "owned"})
    table_history.activity(1, "resolve_file_source", SOURCE)
    reserved = action_input(
        flat_actions(
            replay(
                analyze_file,
                History("analyze_file", table_history.input, instance_id=INSTANCE),
            )
        )[-1]
    )["record"]
    table_history.activity(
        2, "ensure_live_response_script", {"status": "ok", "script": "anyrun-upload.sh"}
    )
    table_history.activity(3, "request_file_upload", REQUESTED)
    raise_event(table_history)
    action = last_action(replay(analyze_file, table_history))
    assert action["functionName"] == "submit_file_analysis"
    assert action_input(action)["record"]["key"] == reserved["key"]


def test_duplicate_upload_event_ignored(history, options):
    """A blob-created event delivered twice (at-least-once) changes nothing."""
    up_to_request(history)
    history.activity(2, "request_file_upload", REQUESTED)
    raise_event(history)
    raise_event(history)
    history.activity(
        4, "submit_file_analysis", {"status": "submitted", "task_id": "t-9"}
    )
    state = replay(analyze_file, history)
    actions = flat_actions(state)
    submits = [a for a in actions if a.get("functionName") == "submit_file_analysis"]
    timeout = options["file_options"]["linux"]["opt_timeout"]
    assert len(submits) == 1
    assert actions[-1]["actionType"] == CREATE_TIMER
    assert actions[-1]["fireAt"] == iso(history.now + timedelta(seconds=timeout - 5))


UPLOAD_FAILED_CHECK = {
    "state": "Failed",
    "blob_exists": False,
    "script": {
        "status": "failed",
        "reason": "upload_failed",
        "message": "Put Blob failed: ConnectFailure after 5 attempts",
    },
}


def test_upload_failure_requests_upload_again(history):
    up_to_request(history)
    history.activity(2, "request_file_upload", REQUESTED)
    timer_then_check(history, 3, UPLOAD_FAILED_CHECK, FIRST_ACTION_CHECK_SECONDS)
    action = last_action(replay(analyze_file, history))
    assert action["actionType"] == CREATE_TIMER
    assert action["fireAt"] == iso(
        history.now + timedelta(seconds=UPLOAD_RETRY_WAIT_SECONDS)
    )

    history.timer(5, history.now + timedelta(seconds=UPLOAD_RETRY_WAIT_SECONDS))
    history.activity(
        6, "ensure_live_response_script", {"status": "ok", "script": "anyrun-upload.sh"}
    )
    action = last_action(replay(analyze_file, history))
    assert action["functionName"] == "request_file_upload"
    history.activity(7, "request_file_upload", {**REQUESTED, "action_id": "a-2"})
    raise_event(history)
    state = replay(analyze_file, history)
    actions = flat_actions(state)
    assert actions[-1]["functionName"] == "submit_file_analysis"
    assert action_input(actions[-1])["blob"] == BLOB


def test_second_upload_failure_ends_analysis(history):
    up_to_request(history)
    history.activity(2, "request_file_upload", REQUESTED)
    timer_then_check(history, 3, UPLOAD_FAILED_CHECK, FIRST_ACTION_CHECK_SECONDS)
    history.timer(5, history.now + timedelta(seconds=UPLOAD_RETRY_WAIT_SECONDS))
    history.activity(
        6, "ensure_live_response_script", {"status": "ok", "script": "anyrun-upload.sh"}
    )
    history.activity(7, "request_file_upload", {**REQUESTED, "action_id": "a-2"})
    timer_then_check(history, 8, UPLOAD_FAILED_CHECK, FIRST_ACTION_CHECK_SECONDS)
    state = replay(analyze_file, history)
    assert state["isDone"] is True
    assert state["output"]["status"] == "failed"
    assert (
        "ConnectFailure after 5 attempts (upload_failed)" in state["output"]["reason"]
    )
    assert UPLOAD_REQUESTS == 2


def test_throttled_file_submission_waits(history):
    up_to_request(history)
    history.activity(2, "request_file_upload", REQUESTED)
    raise_event(history)
    history.activity(
        4,
        "submit_file_analysis",
        {"status": "throttled", "reason": "Limits exceeded", "retry_after": None},
    )
    # A throttled submission waits and tries again; past the deadline it ends.
    state = replay(analyze_file, history)
    assert last_action(state)["actionType"] == CREATE_TIMER


def test_discard_runs_when_submission_gives_up(history, options):
    up_to_request(history)
    history.activity(2, "request_file_upload", REQUESTED)
    raise_event(history)
    margin = options["deadline_margin_seconds"]
    history.activity(
        4,
        "submit_file_analysis",
        {"status": "throttled", "reason": "Limits exceeded", "retry_after": None},
        seconds=margin + 1000,
    )
    action = last_action(replay(analyze_file, history))
    assert action["functionName"] == "discard_upload"
    assert action_input(action) == {"blob": BLOB}
    history.activity(5, "discard_upload", {"deleted": True})
    state = replay(analyze_file, history)
    assert state["isDone"] is True
    assert state["output"]["status"] == "throttled"
