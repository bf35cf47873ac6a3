"""submit_file_analysis: verify the uploaded blob's hash, stream it, delete it."""

import hashlib
from datetime import UTC, datetime, timedelta

import httpx
import pytest

import clients
from activities.files import submit_file_analysis
from settings import current

from .conftest import activity

SUBMIT = activity(submit_file_analysis)
BODY = b"MZ" + bytes(range(256)) * 2_000


def upload(blob, body):
    url = clients.uploads().upload_url(blob, datetime.now(UTC) + timedelta(minutes=5))
    response = httpx.put(
        url, content=body, headers={"x-ms-blob-type": "BlockBlob"}, timeout=10
    )
    assert response.status_code == 201


def sandbox_tasks(emulators, tag):
    state = httpx.get(f"{emulators.urls['anyrun']}/_emulator/state", timeout=10).json()
    return [task for task in state["tasks"] if tag in task["tags"]]


def request(blob, sha256, tag):
    return {
        "blob": blob,
        "sha256": sha256,
        "file_name": "invoice.exe",
        "options": current().file_options["windows"],
        "tag": tag,
    }


@pytest.fixture
def blob(connector):
    name = "inc-tests:file-00000000000000a1/" + hashlib.sha256(BODY).hexdigest()
    upload(name, BODY)
    return name


def test_matching_file_is_submitted(connector, blob):
    answer = SUBMIT(request(blob, hashlib.sha256(BODY).hexdigest(), "snt-match000001"))
    assert answer["status"] == "submitted"
    assert answer["size"] == len(BODY)
    [task] = sandbox_tasks(connector, "snt-match000001")
    assert task["uuid"] == answer["task_id"]
    assert task["obj"]["sha256"] == hashlib.sha256(BODY).hexdigest()


def test_submitted_blob_is_deleted(connector, blob):
    SUBMIT(request(blob, hashlib.sha256(BODY).hexdigest(), "snt-delete00001"))
    assert clients.uploads().exists(blob) is False


def test_hash_mismatch_submits_nothing(connector, blob):
    wrong = hashlib.sha256(b"another file").hexdigest()
    answer = SUBMIT(request(blob, wrong, "snt-mismatch001"))
    assert answer["status"] == "hash_mismatch"
    assert wrong in answer["reason"]
    assert hashlib.sha256(BODY).hexdigest() in answer["reason"]
    assert sandbox_tasks(connector, "snt-mismatch001") == []


def test_hash_mismatch_deletes_blob(connector, blob):
    SUBMIT(request(blob, hashlib.sha256(b"x").hexdigest(), "snt-mismatch002"))
    assert clients.uploads().exists(blob) is False


def test_redelivery_reuses_task(connector, blob):
    sha256 = hashlib.sha256(BODY).hexdigest()
    first = SUBMIT(request(blob, sha256, "snt-redeliver01"))
    upload(blob, BODY)
    second = SUBMIT(request(blob, sha256, "snt-redeliver01"))
    assert second["status"] == "submitted"
    assert second["reused"] is True
    assert second["task_id"] == first["task_id"]
    assert len(sandbox_tasks(connector, "snt-redeliver01")) == 1


def test_missing_blob_fails_with_reason(connector):
    name = "inc-tests:file-00000000000000a2/" + "0" * 64
    answer = SUBMIT(request(name, "0" * 64, "snt-missing0001"))
    assert answer["status"] == "failed"
    assert "gone" in answer["reason"]
