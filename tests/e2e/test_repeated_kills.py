"""End to end: devhost killed with SIGKILL over and over during every sample incident.

One stack analyses all the sample incidents, URLs and files. devhost is
killed at seeded pseudo-random moments and restarted on the same data folder
until every instance has ended or the kill phase runs out. Then the run is let
finish, and each test checks one exactly-once property of the final state.
"""

import json
import random
import re
import time
from collections import Counter

import httpx
import pytest

from bench.soak import task_indicator_ids
from devhost.stack import LocalStack, load_samples
from enrichment.incident import extract

pytestmark = pytest.mark.e2e

# At 24x a 120 s URL analysis takes 5 s of wall time, a 240 s file analysis
# 10 s, and the offline host's 30-minute upload deadline 75 s. That deadline
# keeps the kill phase going for more than MIN_KILLS kills.
TIME_SCALE = 24
SEED = 20240611
MIN_KILLS = 20
# Wall seconds between a restart and the next kill. Short gaps land in the
# burst of overdue timers and activities that follows each restart.
KILL_GAP_SECONDS = (0.05, 1.5)
KILL_PHASE_SECONDS = 150
FINISH_SECONDS = 60
# Samples posted before the first kill; the rest follow one after each restart,
# so new submissions and write-backs keep coming during the kill phase.
FIRST_WAVE = 3
ENDED = ("Completed", "Failed", "Terminated")
OFFLINE_SAMPLE = "file-offline-host.json"
# Wall-time delays on the calls whose effects must happen once, so that a kill
# often lands while one of them is under way: (emulator, method, path prefix,
# seconds). The delay comes before the emulator reads the body, and a request
# whose client was killed fails there and changes nothing. So these delays widen
# the windows in which a call is lost with its activity, not the ones in which
# a call took effect and only its response was lost.
SLOW_CALLS = [
    ("anyrun", "POST", "/v1/analysis", 0.5),
    ("sentinel", "POST", "/workspaces/", 0.4),
    ("sentinel", "PUT", "/subscriptions/", 0.3),
    ("defender", "POST", "/api/machines/", 0.3),
    ("defender", "PATCH", "/api/alerts/", 0.4),
]
ACTIVITY_LINE = re.compile(
    r"activity\.(started|completed|failed) instance=(\S+) function=(\S+) "
    r"sequence_id=(\d+)"
)


def _slow_down_calls(stack):
    for emulator, method, prefix, seconds in SLOW_CALLS:
        rule = {
            "path_prefix": prefix,
            "method": method,
            "delay_seconds": seconds,
            "times": 1000,
        }
        response = httpx.post(
            f"{stack.url(emulator)}/_emulator/faults", json=rule, timeout=10
        )
        response.raise_for_status()


def _activities_in_flight(lines):
    """Return the activities that devhost's log shows started but not finished."""
    running = set()
    for line in lines:
        match = ACTIVITY_LINE.search(line)
        if match is None:
            continue
        key = (match[2], match[3], int(match[4]))
        if match[1] == "started":
            running.add(key)
        else:
            running.discard(key)
    return sorted(running)


def _states(stack, ids):
    """Return each instance's runtime status and its objects' states."""
    snapshot = {}
    for name, instance_id in ids.items():
        body = stack.incident_status(instance_id).json()
        snapshot[name] = {
            "runtimeStatus": body.get("runtimeStatus"),
            "objects": [o.get("state") for o in body.get("objects", [])],
        }
    return snapshot


def _post(stack, ids, name, body):
    response = stack.post_incident(body)
    assert response.status_code == 202, response.text
    ids[name] = response.json()["id"]


def _kill_repeatedly(stack, samples, rng):
    """Post the samples and kill devhost at random moments until every instance ends.

    Returns the instance ids by sample name and one record per kill.
    """
    waiting = [OFFLINE_SAMPLE] + rng.sample(
        sorted(set(samples) - {OFFLINE_SAMPLE}), len(samples) - 1
    )
    ids = {}
    for name in waiting[:FIRST_WAVE]:
        _post(stack, ids, name, samples[name])
    waiting = waiting[FIRST_WAVE:]

    started = time.monotonic()
    kills = []
    while time.monotonic() - started < KILL_PHASE_SECONDS:
        states = _states(stack, ids)
        if not waiting and all(s["runtimeStatus"] in ENDED for s in states.values()):
            break
        time.sleep(rng.uniform(*KILL_GAP_SECONDS))
        in_flight = _activities_in_flight(stack.children["devhost"].lines)
        stack.kill("devhost")
        kills.append(
            {
                "at_seconds": round(time.monotonic() - started, 2),
                "states_before": states,
                "activities_in_flight": in_flight,
                "anyrun_tasks": len(stack.emulator_state("anyrun")["tasks"]),
            }
        )
        stack.start_devhost()
        if waiting:
            name = waiting.pop(0)
            _post(stack, ids, name, samples[name])
    return ids, kills


def _expected_indicators(stack, status):
    """Return the indicator ids that an incident's finished analyses should upload."""
    expected = set()
    for item in status["output"]["objects"]:
        if item.get("status") == "done":
            expected |= task_indicator_ids(stack, item["task_id"])
    return expected


def _alert_comments(stack, alert_id):
    response = httpx.get(
        f"{stack.url('defender')}/api/alerts/{alert_id}",
        headers={"Authorization": f"Bearer {stack.bearer_token}"},
        timeout=10,
    )
    response.raise_for_status()
    return [str(c.get("comment") or "") for c in response.json()["comments"]]


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """Post every sample, kill devhost until every instance ends, then let it finish."""
    samples = dict(load_samples())
    folder = tmp_path_factory.mktemp("kills")
    with LocalStack(folder, time_scale=TIME_SCALE) as stack:
        _slow_down_calls(stack)
        ids, kills = _kill_repeatedly(stack, samples, random.Random(SEED))
        # The kill record stays next to the stack's logs for a failure's analysis.
        (folder / "kills.json").write_text(json.dumps(kills, indent=1))

        deadline = time.monotonic() + FINISH_SECONDS
        finished = {}
        for name, instance_id in ids.items():
            remaining = max(1.0, deadline - time.monotonic())
            finished[name] = stack.wait_for(instance_id, remaining)

        alerts = {}
        for body in samples.values():
            for alert in extract(body, 20).alerts:
                alerts[alert["id"]] = _alert_comments(stack, alert["id"])

        yield {
            "samples": samples,
            "finished": finished,
            "kills": kills,
            "expected_indicators": {
                name: _expected_indicators(stack, status)
                for name, status in finished.items()
                if status["runtimeStatus"] == "Completed"
            },
            "alerts": alerts,
            "anyrun": stack.emulator_state("anyrun"),
            "sentinel": stack.emulator_state("sentinel"),
            "blobs": stack.upload_blobs(),
        }


def test_at_least_twenty_kills(killed_run):
    assert len(killed_run["kills"]) >= MIN_KILLS, killed_run["kills"]


def test_kills_land_in_uploads_and_waits(killed_run):
    """Some kills hit objects while their files were fetched or analyses ran."""
    seen = Counter(
        state
        for kill in killed_run["kills"]
        for instance in kill["states_before"].values()
        for state in instance["objects"]
    )
    assert seen["fetching"] > 0, seen
    assert seen["submitted"] + seen["waiting"] > 0, seen


def test_kills_land_in_activities(killed_run):
    interrupted = Counter(
        function
        for kill in killed_run["kills"]
        for _instance, function, _sequence in kill["activities_in_flight"]
    )
    assert sum(interrupted.values()) > 0


def test_every_instance_completes(killed_run):
    statuses = {
        name: status["runtimeStatus"] for name, status in killed_run["finished"].items()
    }
    assert statuses == {name: "Completed" for name in killed_run["samples"]}


def test_every_object_done_or_offline_timed_out(killed_run):
    for name, status in killed_run["finished"].items():
        for item in status["output"]["objects"]:
            if name == OFFLINE_SAMPLE:
                assert item["status"] == "timed_out", item
                assert "did not upload" in item["reason"], item
            else:
                assert item["status"] == "done", (name, item)


def test_one_submission_per_object(killed_run):
    tasks = killed_run["anyrun"]["tasks"]
    per_object = Counter(t["obj"].get("sha256") or t["obj"].get("url") for t in tasks)
    analysed = {
        item.get("sha256") or item["object"]
        for status in killed_run["finished"].values()
        for item in status["output"]["objects"]
        if item["status"] == "done"
    }
    assert {key: n for key, n in per_object.items() if n > 1} == {}
    assert len(tasks) == len(analysed)


def test_one_task_per_idempotency_tag(killed_run):
    per_tag = Counter(
        tag
        for task in killed_run["anyrun"]["tasks"]
        for tag in task["tags"]
        if tag.startswith("snt-")
    )
    assert len(per_tag) == len(killed_run["anyrun"]["tasks"])
    assert {tag: n for tag, n in per_tag.items() if n > 1} == {}


def test_objects_share_tasks_across_incidents(killed_run):
    """An object in two incidents reports the one task of its single submission."""
    tasks = {t["uuid"] for t in killed_run["anyrun"]["tasks"]}
    reported = {
        item["task_id"]
        for status in killed_run["finished"].values()
        for item in status["output"]["objects"]
        if item["status"] == "done"
    }
    assert reported == tasks


def test_one_comment_per_incident(killed_run):
    expected_ids = {
        extract(body, 20).incident["id"].lower()
        for body in killed_run["samples"].values()
    }
    counts = {
        incident["id"].lower(): len(incident["comments"])
        for incident in killed_run["sentinel"]["incidents"]
        if incident["id"].lower() in expected_ids
    }
    assert counts == {incident_id: 1 for incident_id in expected_ids}


def test_stored_indicators_match_uploads(killed_run):
    """Indicator ids come from patterns, so a re-upload must not add an object."""
    stored = {
        ident
        for workspace in killed_run["sentinel"]["indicators"].values()
        for ident in workspace
    }
    expected = set().union(*killed_run["expected_indicators"].values())
    assert expected
    assert stored == expected


def test_one_stored_indicator_per_pattern(killed_run):
    patterns = Counter(
        indicator["pattern"]
        for workspace in killed_run["sentinel"]["indicators"].values()
        for indicator in workspace.values()
    )
    assert {p: n for p, n in patterns.items() if n > 1} == {}


def test_every_incident_uploaded_its_indicators(killed_run):
    """Each stored indicator was uploaded at least once per incident that found it."""
    uploads = {
        ident: indicator["uploads"]
        for workspace in killed_run["sentinel"]["indicators"].values()
        for ident, indicator in workspace.items()
    }
    incidents = Counter(
        ident for found in killed_run["expected_indicators"].values() for ident in found
    )
    short = {
        ident: (uploads.get(ident, 0), count)
        for ident, count in incidents.items()
        if uploads.get(ident, 0) < count
    }
    assert short == {}


def test_incident_indicator_counts(killed_run):
    for name, expected in killed_run["expected_indicators"].items():
        indicators = killed_run["finished"][name]["output"]["indicators"]
        assert indicators["uploaded"] == len(expected), name
        assert indicators["failed"] == 0, (name, indicators["errors"])


def test_one_comment_per_alert(killed_run):
    assert killed_run["alerts"]
    for alert_id, comments in killed_run["alerts"].items():
        ours = [c for c in comments if "ANY.RUN" in c]
        assert len(ours) == 1, (alert_id, ours)


def test_upload_container_empty(killed_run):
    assert killed_run["blobs"] == []
