"""End to end: a sandbox plan of 2 parallel analyses and an incident with 6 URLs."""

import json
import time
from datetime import datetime, timedelta

import pytest

from bench.cost import trigger_bodies
from devhost.stack import LocalStack

pytestmark = pytest.mark.e2e

URLS = [f"https://slot-{index}.bench.example.com/" for index in range(6)]


def _emulated(text):
    return datetime.fromisoformat(text.rstrip("Z"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slots")
    incidents = folder / "incidents"
    incidents.mkdir()
    [body] = trigger_bodies([[{"kind": "url", "url": url} for url in URLS]])
    (incidents / "six-urls.json").write_text(json.dumps(body))
    stack = LocalStack(
        folder / "stack", time_scale=120, incidents_dir=incidents, parallel_limit=2
    )
    with stack:
        response = stack.post_incident(body)
        assert response.status_code == 202, response.text
        instance_id = response.json()["id"]
        queued = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = stack.incident_status(instance_id).json()
            queued += [o for o in status["objects"] if o.get("waiting_for") == "slot"]
            if status["runtimeStatus"] == "Completed":
                break
            time.sleep(0.1)
        yield {
            "status": status,
            "queued": queued,
            "tasks": stack.emulator_state("anyrun")["tasks"],
            "requests": stack.emulator_requests("anyrun")["requests"],
        }


def test_every_url_is_done(run):
    assert run["status"]["runtimeStatus"] == "Completed"
    assert [o["status"] for o in run["status"]["output"]["objects"]] == ["done"] * 6


def test_never_more_than_two_running(run):
    moments = []
    for task in run["tasks"]:
        start = _emulated(task["created"])
        moments += [(start, 1), (start + timedelta(seconds=task["duration"]), -1)]
    running, max_running = 0, 0
    # At equal times an end (-1) sorts before a start (+1).
    for _moment, change in sorted(moments):
        running += change
        max_running = max(max_running, running)
    assert len(run["tasks"]) == 6
    assert max_running <= 2


def test_sandbox_never_rejected_a_submission(run):
    assert [r for r in run["requests"] if r["status"] == 429] == []


def test_waiting_objects_shown_queued_with_reason(run):
    assert run["queued"]
    assert {o["state"] for o in run["queued"]} == {"queued"}
    assert "sandbox slots are in use" in run["queued"][0]["reason"]
