"""Per-object progress shown by the status API."""

from types import SimpleNamespace

import pytest
from azure.durable_functions.models.OrchestrationRuntimeStatus import (
    OrchestrationRuntimeStatus,
)

from enrichment.progress import object_progress

ITEM = {"key": "file-0123456789abcdef", "kind": "file", "object": "/tmp/a.sh"}


def child(runtime, custom=None, output=None):
    return SimpleNamespace(
        runtime_status=OrchestrationRuntimeStatus(runtime),
        custom_status=custom,
        output=output,
    )


def test_not_started_is_queued():
    assert object_progress(ITEM, None)["state"] == "queued"


@pytest.mark.parametrize(
    "step",
    ["locating_file", "requesting_upload", "waiting_for_device", "waiting_for_upload"],
)
def test_file_steps_are_fetching(step):
    view = object_progress(ITEM, child("Running", {"state": step}))
    assert view["state"] == "fetching"
    assert view["step"] == step


def test_fetching_shows_device_and_action():
    custom = {
        "state": "waiting_for_upload",
        "device": "lx-0042",
        "action_id": "a-1",
        "deadline": "2026-01-01T00:30:00+00:00",
    }
    view = object_progress(ITEM, child("Running", custom))
    assert view["device"] == "lx-0042"
    assert view["action_id"] == "a-1"
    assert view["deadline"] == "2026-01-01T00:30:00+00:00"
    assert "reason" not in view


def test_waiting_shows_seconds_left():
    custom = {"state": "waiting", "task_url": "t", "remaining": 40}
    view = object_progress(ITEM, child("Running", custom))
    assert view["state"] == "waiting"
    assert view["seconds_left"] == 40


def test_completed_failure_shows_reason():
    output = {"status": "timed_out", "reason": "the device did not upload the file"}
    view = object_progress(ITEM, child("Completed", output=output))
    assert view["state"] == "failed"
    assert view["reason"] == "the device did not upload the file"


def test_done_shows_verdict():
    output = {"status": "done", "verdict": "malicious", "score": 100, "task_url": "u"}
    view = object_progress(ITEM, child("Completed", output=output))
    assert view["state"] == "done"
    assert view["verdict"] == "malicious"
    assert view["score"] == 100


def test_failed_runtime_is_failed():
    view = object_progress(ITEM, child("Failed"))
    assert view == {**ITEM, "state": "failed", "reason": "analysis failed"}


@pytest.mark.parametrize(
    ("custom_state", "waiting_for"),
    [
        ("waiting_for_slot", "slot"),
        ("waiting_for_analysis", "analysis"),
        ("waiting_for_quota", "quota"),
    ],
)
def test_waiting_before_submission_is_queued(custom_state, waiting_for):
    custom = {
        "state": custom_state,
        "reason": "all 2 sandbox slots are in use",
        "next_check_at": "2026-12-01T09:02:05+00:00",
    }
    view = object_progress(ITEM, child("Running", custom))
    assert view["state"] == "queued"
    assert view["reason"] == "all 2 sandbox slots are in use"
    assert view["waiting_for"] == waiting_for
    assert view["next_check_at"] == "2026-12-01T09:02:05+00:00"
