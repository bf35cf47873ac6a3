"""Submissions through the analysis table: claims, reuse, the tag lookup, slots.

The activities run for real against the ANY.RUN emulator and Azurite's table
service; the emulator's request log shows which sandbox calls they made.
"""

import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest

import clients
from activities import records
from activities.analysis import check_analysis, reserve_analysis, submit_url_analysis
from enrichment.records import record_key
from settings import current

from .conftest import activity

SUBMIT = activity(submit_url_analysis)
CHECK = activity(check_analysis)
RESERVE = activity(reserve_analysis)
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def sandbox(connector):
    """The ANY.RUN emulator, reset: no tasks, empty request log."""
    url = connector.urls["anyrun"]
    httpx.post(f"{url}/_emulator/reset", timeout=10).raise_for_status()
    return url


def sandbox_requests(url, method=None, path=None):
    entries = httpx.get(f"{url}/_emulator/requests", timeout=10).json()["requests"]
    return [
        entry
        for entry in entries
        if (method is None or entry["method"] == method)
        and (path is None or entry["path"] == path)
    ]


def tasks(url):
    return httpx.get(f"{url}/_emulator/state", timeout=10).json()["tasks"]


def record(owner, target, now=NOW, window_hours=24):
    options = current().url_options
    return {
        "key": record_key("url", target, options),
        "owner": owner,
        "now": now.isoformat(),
        "stale_seconds": 720,
        "window_hours": window_hours,
        "timeout": options["opt_timeout"],
        "margin": 600,
        "object": target,
    }


def payload(owner, target, tag, now=NOW):
    return {
        "url": target,
        "tag": tag,
        "options": current().url_options,
        "record": record(owner, target, now),
    }


def test_first_submission_skips_lookup(sandbox):
    answer = SUBMIT(payload("inc-a:url-1", "https://a.example.com/", "snt-lookup00001"))
    assert answer["status"] == "submitted"
    assert len(sandbox_requests(sandbox, "POST", "/v1/analysis")) == 1
    assert sandbox_requests(sandbox, "GET", "/v1/analysis") == []


def test_repeated_activity_returns_stored_task(sandbox):
    job = payload("inc-a:url-1", "https://b.example.com/", "snt-repeat00001")
    first = SUBMIT(job)
    second = SUBMIT(job)
    assert second["task_id"] == first["task_id"]
    assert len(tasks(sandbox)) == 1
    assert sandbox_requests(sandbox, "GET", "/v1/analysis") == []


def test_redelivery_after_crash_submits_once(sandbox, monkeypatch):
    """The first run dies after its POST, before the task id is stored."""
    job = payload("inc-a:url-1", "https://c.example.com/", "snt-crash000001")
    stored = records.record_task

    def crash(*args, **kwargs):
        raise ConnectionError("worker lost before the record update")

    monkeypatch.setattr(records, "record_task", crash)
    with pytest.raises(ConnectionError):
        SUBMIT(job)
    monkeypatch.setattr(records, "record_task", stored)

    redelivered = SUBMIT(job)
    assert redelivered["status"] == "submitted"
    assert redelivered["reused"] is True
    [task] = tasks(sandbox)
    assert task["uuid"] == redelivered["task_id"]
    assert "snt-crash000001" in task["tags"]
    assert len(sandbox_requests(sandbox, "GET", "/v1/analysis")) == 1


def test_redelivery_stores_found_task(sandbox, monkeypatch):
    job = payload("inc-a:url-1", "https://d.example.com/", "snt-crash000002")
    stored = records.record_task
    monkeypatch.setattr(
        records, "record_task", lambda *a, **k: (_ for _ in ()).throw(OSError("cut"))
    )
    with pytest.raises(OSError):
        SUBMIT(job)
    monkeypatch.setattr(records, "record_task", stored)
    SUBMIT(job)
    third = SUBMIT(job)
    assert third["status"] == "submitted"
    assert len(sandbox_requests(sandbox, "GET", "/v1/analysis")) == 1


def test_other_incident_reuses_task(sandbox):
    target = "https://e.example.com/"
    first = SUBMIT(payload("inc-a:url-1", target, "snt-reuse000001"))
    second = SUBMIT(payload("inc-b:url-1", target, "snt-reuse000002"))
    assert second["status"] == "reused"
    assert second["task_id"] == first["task_id"]
    assert second["owner"] == "inc-a:url-1"
    assert second["expected_end"]
    assert len(tasks(sandbox)) == 1


def test_reuse_ends_with_window(sandbox):
    target = "https://f.example.com/"
    SUBMIT(payload("inc-a:url-1", target, "snt-window00001"))
    later = NOW + timedelta(hours=25)
    answer = SUBMIT(payload("inc-b:url-1", target, "snt-window00002", now=later))
    assert answer["status"] == "submitted"
    assert len(tasks(sandbox)) == 2


def test_simultaneous_incidents_submit_once(sandbox):
    target = "https://g.example.com/"
    answers = []
    barrier = threading.Barrier(4)

    def run(index):
        barrier.wait()
        answers.append(
            SUBMIT(payload(f"inc-{index}:url-1", target, f"snt-race0000{index:03d}"))
        )

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    statuses = sorted(answer["status"] for answer in answers)
    assert statuses.count("submitted") == 1
    assert set(statuses) <= {"submitted", "reused", "pending"}
    assert len(sandbox_requests(sandbox, "POST", "/v1/analysis")) == 1


def test_pending_claim_is_not_submitted(sandbox):
    target = "https://h.example.com/"
    owned = RESERVE({"record": record("inc-a:url-1", target)})
    answer = SUBMIT(payload("inc-b:url-1", target, "snt-pending0001"))
    assert owned["status"] == "owned"
    assert answer["status"] == "pending"
    assert "inc-a:url-1" in answer["reason"]
    assert tasks(sandbox) == []


def test_stale_claim_is_taken_over(sandbox):
    target = "https://i.example.com/"
    RESERVE({"record": record("inc-a:url-1", target)})
    later = NOW + timedelta(seconds=721)
    answer = SUBMIT(payload("inc-b:url-1", target, "snt-stale000001", now=later))
    assert answer["status"] == "submitted"
    assert len(tasks(sandbox)) == 1


def test_rejected_submission_frees_claim(sandbox):
    target = "https://j.example.com/"
    bad = payload("inc-a:url-1", target, "snt-reject00001")
    bad["options"] = {**bad["options"], "opt_timeout": 5}
    assert SUBMIT(bad)["status"] == "rejected"
    answer = SUBMIT(payload("inc-b:url-1", target, "snt-reject00002"))
    assert answer["status"] == "submitted"


def test_failed_task_is_not_reused(sandbox):
    target = "http://broken.example.net/"
    first = SUBMIT(payload("inc-a:url-1", target, "snt-broken00001"))
    release = {"key": record("x", target)["key"], "owner": "inc-a:url-1"}
    status = CHECK({"task_id": first["task_id"], "release": release})
    while status["state"] == "running":
        status = CHECK({"task_id": first["task_id"], "release": release})
    assert status["state"] == "failed"
    answer = SUBMIT(payload("inc-b:url-1", target, "snt-broken00002"))
    assert answer["status"] == "submitted"


def test_done_task_is_marked_for_reusers(sandbox):
    target = "https://k.example.com/"
    first = SUBMIT(payload("inc-a:url-1", target, "snt-done0000001"))
    release = {"key": record("x", target)["key"], "owner": "inc-a:url-1"}
    while CHECK({"task_id": first["task_id"], "release": release})["state"] != "done":
        pass
    answer = SUBMIT(payload("inc-b:url-1", target, "snt-done0000002"))
    assert answer["status"] == "reused"
    assert answer["done"] is True


def test_no_record_looks_up_tag(sandbox):
    job = payload("inc-a:url-1", "https://l.example.com/", "snt-notable0001")
    job["record"] = None
    assert SUBMIT(job)["status"] == "submitted"
    assert len(sandbox_requests(sandbox, "GET", "/v1/analysis")) == 1


@pytest.fixture
def two_slots(sandbox, monkeypatch):
    monkeypatch.setenv("SANDBOX_MAX_PARALLEL", "2")
    clients.reset()
    records.forget_limit()
    return sandbox


def test_slot_limit_holds_third_submission(two_slots):
    for index in range(2):
        target = f"https://slot{index}.example.com/"
        assert (
            SUBMIT(payload(f"inc-{index}:url-1", target, f"snt-slot0000{index:03d}"))[
                "status"
            ]
            == "submitted"
        )
    answer = SUBMIT(
        payload("inc-9:url-1", "https://slot9.example.com/", "snt-slot0000009")
    )
    assert answer["status"] == "no_slot"
    assert "2 sandbox slots" in answer["reason"]
    expected_end = NOW + timedelta(seconds=current().url_options["opt_timeout"])
    assert datetime.fromisoformat(answer["retry_at"]) > expected_end
    assert len(tasks(two_slots)) == 2


def test_slot_limit_reads_account_once(two_slots):
    for index in range(3):
        target = f"https://user{index}.example.com/"
        SUBMIT(payload(f"inc-{index}:url-1", target, f"snt-user0000{index:03d}"))
    assert len(sandbox_requests(two_slots, "GET", "/v1/user")) == 1


def test_finished_task_frees_slot(two_slots):
    answers = [
        SUBMIT(
            payload(
                f"inc-{i}:url-1",
                f"https://free{i}.example.com/",
                f"snt-free0000{i:03d}",
            )
        )
        for i in range(2)
    ]
    release = {"owner": "inc-0:url-1"}
    while (
        CHECK({"task_id": answers[0]["task_id"], "release": release})["state"] != "done"
    ):
        pass
    answer = SUBMIT(
        payload("inc-9:url-1", "https://free9.example.com/", "snt-free0000009")
    )
    assert answer["status"] == "submitted"


def test_expired_slot_is_taken(two_slots):
    for index in range(2):
        target = f"https://exp{index}.example.com/"
        SUBMIT(payload(f"inc-{index}:url-1", target, f"snt-exp00000{index:03d}"))
    later = NOW + timedelta(seconds=current().url_options["opt_timeout"] + 601)
    answer = SUBMIT(
        payload(
            "inc-9:url-1", "https://exp9.example.com/", "snt-exp00000009", now=later
        )
    )
    assert answer["status"] == "submitted"


def test_submission_names_its_slot(two_slots):
    first = SUBMIT(
        payload("inc-0:url-1", "https://idx0.example.com/", "snt-idx00000000")
    )
    second = SUBMIT(
        payload("inc-1:url-1", "https://idx1.example.com/", "snt-idx00000001")
    )
    assert {first["slot"], second["slot"]} == {0, 1}
    release = {"owner": "inc-0:url-1", "slot": first["slot"]}
    while CHECK({"task_id": first["task_id"], "release": release})["state"] != "done":
        pass
    third = SUBMIT(
        payload("inc-9:url-1", "https://idx9.example.com/", "snt-idx00000009")
    )
    assert third["slot"] == first["slot"]
