"""Another incident's expired record: confirmed with the sandbox, not overwritten.

Record times come from the orchestrator's input, so a record can look expired
while its task still runs. These tests age records by claiming with a later
durable time, and check that a live task is reused and only a dead one is
submitted again.
"""

from datetime import timedelta

import clients
from activities import records
from activities.submission import in_flight_seconds
from enrichment.results import idempotency_tag
from settings import current

from .test_submissions import (
    CHECK,
    NOW,
    SUBMIT,
    payload,
    record,
    sandbox,  # noqa: F401 - the fixture, used by name
    sandbox_requests,
    tasks,
)

OWNER = "inc-a:url-1"
OTHER = "inc-b:url-1"
THIRD = "inc-c:url-1"
# Past the record's deadline (120 s timeout plus 600 s margin), within the
# 24-hour reuse window.
LATER = NOW + timedelta(hours=2)


def job(owner, target, now=NOW):
    return payload(owner, target, idempotency_tag(owner), now=now)


def test_expired_record_of_live_task_is_reused(sandbox):  # noqa: F811
    target = "https://live.example.com/"
    first = SUBMIT(job(OWNER, target))
    answer = SUBMIT(job(OTHER, target, now=LATER))
    assert answer["status"] == "reused"
    assert answer["task_id"] == first["task_id"]
    assert answer["owner"] == OWNER
    assert len(tasks(sandbox)) == 1
    assert len(sandbox_requests(sandbox, "POST", "/v1/analysis")) == 1


def test_confirmed_record_needs_no_second_check(sandbox):  # noqa: F811
    target = "https://confirmed.example.com/"
    first = SUBMIT(job(OWNER, target))
    SUBMIT(job(OTHER, target, now=LATER))
    monitor_calls = len(sandbox_requests(sandbox, "GET"))
    answer = SUBMIT(job(THIRD, target, now=LATER))
    assert answer["status"] == "reused"
    assert answer["task_id"] == first["task_id"]
    assert len(sandbox_requests(sandbox, "GET")) == monitor_calls


def test_expired_record_of_failed_task_is_taken_over(sandbox):  # noqa: F811
    target = "http://broken.example.net/"
    first = SUBMIT(job(OWNER, target))
    while CHECK({"task_id": first["task_id"]})["state"] == "running":
        pass
    answer = SUBMIT(job(OTHER, target, now=LATER))
    assert answer["status"] == "submitted"
    assert answer["task_id"] != first["task_id"]
    assert len(tasks(sandbox)) == 2


def claim_and_flag(owner, target):
    """Leave `owner`'s claim flagged submitting, as a worker that died mid-POST."""
    table = clients.analysis_table()
    request = records.RecordRequest.from_payload(record(owner, target))
    claimed = records.claim(table, request)
    assert claimed.status == "owned"
    assert records.mark_submitting(table, claimed)


def test_submitting_claim_in_flight_is_pending(sandbox):  # noqa: F811
    target = "https://inflight.example.com/"
    claim_and_flag(OWNER, target)
    answer = SUBMIT(job(OTHER, target, now=LATER))
    assert answer["status"] == "pending"
    assert OWNER in answer["reason"]
    assert tasks(sandbox) == []


def after_in_flight(monkeypatch):
    """Move the workers' wall clock past the window in which a POST could land."""
    moved = records.wall_now() + timedelta(seconds=in_flight_seconds() + 1)
    monkeypatch.setattr(records, "wall_now", lambda: moved)


def test_submitting_claim_without_task_is_taken_over(sandbox, monkeypatch):  # noqa: F811
    target = "https://died.example.com/"
    claim_and_flag(OWNER, target)
    after_in_flight(monkeypatch)
    answer = SUBMIT(job(OTHER, target, now=LATER))
    assert answer["status"] == "submitted"
    assert [task["tags"] for task in tasks(sandbox)] == [[idempotency_tag(OTHER)]]
    # The previous owner's tag was looked up before the POST.
    assert len(sandbox_requests(sandbox, "GET", "/v1/analysis")) == 1


def test_submitting_claim_with_landed_task_is_reused(sandbox, monkeypatch):  # noqa: F811
    """The owner's POST landed but the owner died before storing the task id."""
    target = "https://landed.example.com/"
    claim_and_flag(OWNER, target)
    landed = clients.anyrun().submit_url(
        target, current().url_options, idempotency_tag(OWNER)
    )
    after_in_flight(monkeypatch)
    answer = SUBMIT(job(OTHER, target, now=LATER))
    assert answer["status"] == "reused"
    assert answer["task_id"] == landed
    assert len(tasks(sandbox)) == 1
