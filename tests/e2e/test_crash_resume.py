"""End to end: devhost killed with SIGKILL mid-analysis resumes, doubling nothing."""

import time
from collections import Counter

import pytest

from devhost.stack import LocalStack, load_samples
from enrichment.incident import extract

pytestmark = pytest.mark.e2e

# 120 s analyses take 5 s of wall time at 24x: long enough to kill devhost
# while the analyses are under way.
TIME_SCALE = 24


def wait_for_state(stack, instance_id, states, timeout=30):
    """Poll the status API until some object reaches one of `states`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = stack.incident_status(instance_id).json()
        objects = [o for o in status.get("objects", []) if o["state"] in states]
        if objects:
            return status, objects
        time.sleep(0.1)
    raise TimeoutError(f"no object of {instance_id} reached {states}")


@pytest.fixture(scope="module")
def crashed_run(tmp_path_factory):
    """Kill devhost while every URL sample is being analysed, restart it, finish."""
    samples = load_samples(pattern="url-*.json")
    with LocalStack(tmp_path_factory.mktemp("crash"), time_scale=TIME_SCALE) as stack:
        ids = {}
        for name, body in samples:
            response = stack.post_incident(body)
            assert response.status_code == 202, response.text
            ids[name] = response.json()["id"]

        before_kill = {}
        for name, instance_id in ids.items():
            before_kill[name] = wait_for_state(
                stack, instance_id, {"submitted", "waiting"}
            )

        stack.kill("devhost")
        tasks_at_kill = len(stack.emulator_state("anyrun")["tasks"])
        stack.start_devhost()

        finished = {
            name: stack.wait_for(instance_id, 120) for name, instance_id in ids.items()
        }
        yield {
            "samples": dict(samples),
            "before_kill": before_kill,
            "finished": finished,
            "tasks_at_kill": tasks_at_kill,
            "anyrun": stack.emulator_state("anyrun"),
            "sentinel": stack.emulator_state("sentinel"),
        }


def test_waiting_object_shows_task_link(crashed_run):
    for _status, objects in crashed_run["before_kill"].values():
        assert all(
            o["task_url"].startswith("https://app.any.run/tasks/") for o in objects
        )


def test_every_instance_completes(crashed_run):
    assert {s["runtimeStatus"] for s in crashed_run["finished"].values()} == {
        "Completed"
    }


def test_every_object_done(crashed_run):
    for status in crashed_run["finished"].values():
        assert [o["status"] for o in status["output"]["objects"]] == ["done"] * len(
            status["output"]["objects"]
        )


def test_one_submission_per_url(crashed_run):
    """A URL in two incidents is analysed once: the second reuses the task."""
    per_tag = Counter(tag for t in crashed_run["anyrun"]["tasks"] for tag in t["tags"])
    urls = {
        o["object"]
        for s in crashed_run["finished"].values()
        for o in s["output"]["objects"]
    }
    assert len(crashed_run["anyrun"]["tasks"]) == len(urls)
    assert set(per_tag.values()) == {1}


def test_no_submission_after_restart(crashed_run):
    assert len(crashed_run["anyrun"]["tasks"]) == crashed_run["tasks_at_kill"]


def test_one_comment_per_incident(crashed_run):
    wanted = {
        extract(body, 20).incident["id"].lower()
        for body in crashed_run["samples"].values()
    }
    counts = {
        incident["id"].lower(): len(incident["comments"])
        for incident in crashed_run["sentinel"]["incidents"]
        if incident["id"].lower() in wanted
    }
    assert counts == {incident_id: 1 for incident_id in wanted}
