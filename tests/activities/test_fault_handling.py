"""Activities under injected faults: each fault kind of the emulators, one at a time.

Each test adds fault rules to an emulator (see emulators/README.md), runs an
activity as a redelivering host would, and checks the effect in the
emulator's state: one task, one comment, every indicator stored, a new token
after an expired one.
"""

import json
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest

import clients
from activities import records
from activities.analysis import (
    check_analysis,
    fetch_analysis_report,
    submit_url_analysis,
)
from activities.incident_writes import (
    comment_defender_alerts,
    update_incident_labels,
    upload_indicators,
)
from clients import errors
from devhost.stack import load_samples
from enrichment.incident import extract
from enrichment.records import record_key
from settings import current

from .conftest import ANYRUN_KEY, BEARER, activity

SUBMIT = activity(submit_url_analysis)
CHECK = activity(check_analysis)
REPORT = activity(fetch_analysis_report)
LABELS = activity(update_incident_labels)
INDICATORS = activity(upload_indicators)
ALERTS = activity(comment_defender_alerts)
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
# The client's read timeout in these tests; slow faults wait longer.
TIMEOUT = 1


@pytest.fixture
def faulty(connector, monkeypatch):
    """Emulators reset, with a one-second client timeout and short retry waits."""
    monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", str(TIMEOUT))
    monkeypatch.setenv("HTTP_MAX_RETRY_WAIT_SECONDS", "1")
    clients.reset()
    records.forget_limit()
    for url in connector.urls.values():
        httpx.post(f"{url}/_emulator/reset", timeout=10).raise_for_status()
    yield connector.urls
    clients.reset()


def add_faults(url, *rules):
    response = httpx.post(f"{url}/_emulator/faults", json=list(rules), timeout=10)
    assert response.status_code == 200, response.text


def fault_stats(url):
    return httpx.get(f"{url}/_emulator/faults/stats", timeout=10).json()["injected"]


def state(url):
    return httpx.get(f"{url}/_emulator/state", timeout=10).json()


def url_job(target, tag):
    options = current().url_options
    return {
        "url": target,
        "tag": tag,
        "options": options,
        "record": {
            "key": record_key("url", target, options),
            "owner": f"inc-{uuid.uuid4().hex[:8]}:url-1",
            "now": NOW.isoformat(),
            "stale_seconds": 720,
            "window_hours": 24,
            "timeout": options["opt_timeout"],
            "margin": 600,
            "object": target,
        },
    }


def submit_like_the_host(job, attempts=3):
    """Run the activity until it returns, as call_activity_with_retry would."""
    for attempt in range(1, attempts + 1):
        try:
            return SUBMIT(job)
        except errors.ConnectorError:
            if attempt == attempts:
                raise
    raise AssertionError("no attempt ran")


# Sandbox submissions ---------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "found"),
    [
        pytest.param({"kind": "reset_after"}, True, id="answer-lost-after-effect"),
        pytest.param({"kind": "late", "delay_seconds": TIMEOUT + 0.5}, True, id="late"),
        # The emulator reads the body after the delay, from a connection the
        # client has closed: the POST fails there and creates nothing.
        pytest.param(
            {"kind": "delay", "delay_seconds": TIMEOUT + 0.5},
            False,
            id="slow-before-effect",
        ),
    ],
)
def test_submission_with_unknown_outcome_makes_one_task(faulty, rule, found):
    """The task may exist though the client got no response: found, not paid twice."""
    add_faults(
        faulty["anyrun"], {**rule, "path_prefix": "/v1/analysis", "method": "POST"}
    )
    target = f"https://unknown-{uuid.uuid4().hex[:6]}.example.com/"
    tag = "snt-" + uuid.uuid4().hex[:12]
    answer = submit_like_the_host(url_job(target, tag))
    tasks = state(faulty["anyrun"])["tasks"]
    assert [task["tags"] for task in tasks] == [[tag]]
    assert answer["status"] == "submitted"
    assert answer["task_id"] == tasks[0]["uuid"]
    assert answer["reused"] is found


@pytest.mark.parametrize("kind", ["reset", "status"])
def test_submission_refused_before_effect_is_sent_again(faulty, kind):
    rule = {"kind": kind, "path_prefix": "/v1/analysis", "method": "POST"}
    if kind == "status":
        rule["status"] = 502
    add_faults(faulty["anyrun"], rule)
    tag = "snt-" + uuid.uuid4().hex[:12]
    answer = submit_like_the_host(url_job("https://refused.example.com/", tag))
    tasks = state(faulty["anyrun"])["tasks"]
    assert len(tasks) == 1
    assert answer["task_id"] == tasks[0]["uuid"]
    assert answer["reused"] is False
    assert fault_stats(faulty["anyrun"])[kind] == 1


def test_submission_quota_reached_is_an_answer(faulty):
    response = httpx.post(
        f"{faulty['anyrun']}/_emulator/limits", json={"dailyQuota": 0}, timeout=10
    )
    response.raise_for_status()
    answer = SUBMIT(url_job("https://quota.example.com/", "snt-quota0000001"))
    assert answer["status"] == "throttled"
    assert "daily API quota" in answer["reason"]
    assert state(faulty["anyrun"])["tasks"] == []


# Status and report ------------------------------------------------------------


def finished_task(url, target="https://done.example.com/"):
    answer = SUBMIT(url_job(target, "snt-" + uuid.uuid4().hex[:12]))
    task_id = answer["task_id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if CHECK({"task_id": task_id})["state"] == "done":
            return task_id
        time.sleep(0.05)
    raise AssertionError("the task did not finish in 20 s")


@pytest.mark.parametrize(
    ("rule", "faults"),
    [
        ({"kind": "cut_stream", "events": 0}, 2),
        # The first event already reports done, so the cut after it is harmless.
        ({"kind": "cut_stream", "events": 1}, 1),
        ({"kind": "status", "status": 503, "retry_after": 0}, 2),
        ({"kind": "reset"}, 2),
    ],
)
def test_status_check_survives_broken_streams(faulty, rule, faults):
    task_id = finished_task(faulty["anyrun"])
    add_faults(
        faulty["anyrun"],
        {**rule, "path_prefix": "/v1/analysis/monitor/", "times": 2},
    )
    status = CHECK({"task_id": task_id, "follow": True})
    assert status["state"] == "done"
    assert sum(fault_stats(faulty["anyrun"]).values()) == faults


def test_report_404_of_known_task_is_not_ready(faulty):
    task_id = finished_task(faulty["anyrun"])
    add_faults(
        faulty["anyrun"],
        {"path_regex": r"/v1/analysis/[0-9a-f-]{36}", "method": "GET", "status": 404},
    )
    first = REPORT({"task_id": task_id})
    assert first["status"] == "not_ready"
    assert "404" in first["reason"]
    second = REPORT({"task_id": task_id})
    assert second["status"] == "done"
    assert second["task_id"] == task_id


def test_report_of_unknown_task_fails(faulty):
    missing = str(uuid.uuid4())
    answer = REPORT({"task_id": missing})
    assert answer["status"] == "failed"
    assert "404" in answer["reason"]


# Sentinel writes --------------------------------------------------------------


@pytest.fixture
def incident(faulty):
    """A sample incident added to the Sentinel emulator; returns its ARM id."""
    body = dict(load_samples(pattern="url-phishing.json"))["url-phishing.json"]
    response = httpx.post(
        f"{faulty['sentinel']}/_emulator/incidents", json=body, timeout=10
    )
    assert response.status_code in (200, 201), response.text
    return extract(body, 20).incident


def labels_of(url, incident_id):
    for item in state(url)["incidents"]:
        if item["id"].lower() == incident_id.lower():
            return [
                label["labelName"] if isinstance(label, dict) else label
                for label in item["labels"]
            ]
    raise AssertionError(f"no incident {incident_id}")


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "status", "status": 409, "method": "PUT"},
        {"kind": "reset_after", "method": "PUT"},
        {"kind": "expire_token"},
    ],
    ids=["etag-conflict", "answer-lost", "token-expired"],
)
def test_labels_merge_once_under_faults(faulty, incident, rule):
    add_faults(faulty["sentinel"], {**rule, "path_prefix": "/subscriptions/"})
    answer = LABELS({"incident_id": incident["id"], "labels": ["ANY.RUN: soak"]})
    assert answer["status"] in ("updated", "unchanged"), answer
    labels = labels_of(faulty["sentinel"], incident["id"])
    assert labels.count("ANY.RUN: soak") == 1
    assert sum(fault_stats(faulty["sentinel"]).values()) == 1


def indicator_results(count):
    iocs = [
        {"type": "domain", "value": f"c2-{n}.example.net", "reputation": "malicious"}
        for n in range(count)
    ]
    return [
        {
            "status": "done",
            "task_id": "t-1",
            "task_url": "https://app.any.run/tasks/t-1",
            "indicator_iocs": iocs,
        }
    ]


def stored_patterns(url):
    return {
        indicator["pattern"]
        for workspace in state(url)["indicators"].values()
        for indicator in workspace.values()
    }


def upload(incident, count):
    options = current().plan_options()
    return INDICATORS(
        {
            "workspace_id": incident["workspace_id"],
            "results": indicator_results(count),
            "options": options,
        }
    )


def test_partial_ti_failure_is_sent_again(faulty, incident):
    add_faults(
        faulty["sentinel"],
        {"kind": "partial", "path_prefix": "/workspaces/", "fail_ratio": 0.5},
    )
    answer = upload(incident, 6)
    assert answer == {"uploaded": 6, "failed": 0, "errors": []}
    assert len(stored_patterns(faulty["sentinel"])) == 6
    assert fault_stats(faulty["sentinel"])["partial"] == 1


def test_partial_ti_failure_twice_is_reported(faulty, incident):
    add_faults(
        faulty["sentinel"],
        {
            "kind": "partial",
            "path_prefix": "/workspaces/",
            "fail_ratio": 0.5,
            "times": 2,
            "seed": 4,
        },
    )
    answer = upload(incident, 4)
    assert answer["failed"] >= 1
    assert answer["uploaded"] + answer["failed"] == 4
    assert len(stored_patterns(faulty["sentinel"])) == answer["uploaded"]
    for error in answer["errors"]:
        assert error["pattern"].startswith("[domain-name:value")
        assert "retry the upload" in error["error"]


# Defender ------------------------------------------------------------------------


ALERT_SAMPLE = "file-windows-invoice.json"


@pytest.fixture
def alert(faulty):
    body = dict(load_samples(pattern=ALERT_SAMPLE))[ALERT_SAMPLE]
    return extract(body, 20).alerts[0]


def alert_comments(url, alert_id):
    response = httpx.get(
        f"{url}/api/alerts/{alert_id}",
        headers={"Authorization": f"Bearer {BEARER}"},
        timeout=10,
    )
    response.raise_for_status()
    return [str(c.get("comment") or "") for c in response.json()["comments"]]


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "reset_after"},
        {"kind": "late", "delay_seconds": TIMEOUT + 0.5},
        {"kind": "delay", "delay_seconds": TIMEOUT + 0.5},
        {"kind": "status", "status": 500},
        {"kind": "expire_token"},
    ],
    ids=["answer-lost", "late", "slow-before-effect", "server-error", "token"],
)
def test_alert_commented_once_under_faults(faulty, alert, rule):
    add_faults(
        faulty["defender"],
        {**rule, "path_prefix": "/api/alerts/", "method": "PATCH"},
    )
    marker = uuid.uuid4().hex
    answer = ALERTS(
        {
            "alerts": [alert],
            "results": [{"status": "done", "object": "x", "verdict": "malicious"}],
            "marker": marker,
        }
    )
    assert answer["status"] == "written", answer
    ours = [c for c in alert_comments(faulty["defender"], alert["id"]) if marker in c]
    assert len(ours) == 1
    assert sum(fault_stats(faulty["defender"]).values()) == 1


def test_expired_defender_token_is_renewed(faulty):
    add_faults(faulty["defender"], {"kind": "expire_token", "path_prefix": "/api/"})
    defender = clients.defender()
    first = defender.auth_headers()["Authorization"]
    machine = defender.get_machine("1e5bc9d7e413ddd7902c2932e418702b84d0cc07")
    assert machine["computerDnsName"] == "ws-0042.corp.example.com"
    second = defender.auth_headers()["Authorization"]
    assert first != second
    assert first.startswith(f"Bearer {BEARER}.")
    assert fault_stats(faulty["defender"])["expire_token"] == 1
    # The expired token stays refused.
    response = httpx.get(
        f"{faulty['defender']}/api/machines",
        headers={"Authorization": first},
        timeout=10,
    )
    assert response.status_code == 401
    assert "invalid_token" in response.headers["WWW-Authenticate"]


def test_no_secret_in_fault_logs(faulty, incident, caplog):
    """The runs above log retries and unknown outcomes without any secret."""
    add_faults(
        faulty["anyrun"],
        {"kind": "reset_after", "path_prefix": "/v1/analysis", "method": "POST"},
        {"kind": "status", "path_prefix": "/v1/analysis", "status": 503},
    )
    add_faults(faulty["sentinel"], {"kind": "expire_token", "path_prefix": "/"})
    with caplog.at_level("DEBUG"):
        submit_like_the_host(url_job("https://logs.example.com/", "snt-logs00000001"))
        LABELS({"incident_id": incident["id"], "labels": ["ANY.RUN: logs"]})
    text = caplog.text + json.dumps([r.args for r in caplog.records], default=str)
    assert "analysis.outcome_unknown" in text
    assert ANYRUN_KEY not in text
    assert BEARER not in text
