"""Defender emulator: alerts, their evidence and PATCH with comments."""

import httpx
import pytest

from tests.emulators.conftest import (
    EICAR_SHA256,
    LINUX_DISK_SHA256,
    LINUX_QUARANTINE_ID,
)

pytestmark = pytest.mark.timeout(30)

EICAR_ALERT = "da637551234567890123_-123456789"
HASH_ONLY_ALERT = "da637551234567890125_-987654321"
WINDOWS_ALERT = "da637551234567890124_1234567890"


async def test_alert_get(defender: httpx.AsyncClient) -> None:
    response = await defender.get(f"/api/alerts/{EICAR_ALERT}")
    alert = response.json()
    evidence = alert["evidence"][0]
    assert response.status_code == 200
    assert alert["id"] == EICAR_ALERT
    assert alert["machineId"] == LINUX_QUARANTINE_ID
    assert alert["computerDnsName"] == "lx-0042"
    assert alert["status"] == "New"
    assert alert["comments"] == []
    assert alert["alertCreationTime"].endswith("Z")
    assert alert["@odata.context"].endswith("#Alerts/$entity")
    assert evidence["entityType"] == "File"
    assert evidence["sha256"] == EICAR_SHA256
    assert evidence["fileName"] == "eicar.com"
    assert evidence["filePath"] == "/home/azureuser"
    assert evidence["detectionStatus"] == "Prevented"
    assert "minutesBeforeStart" not in alert


async def test_alert_evidence_kinds(defender: httpx.AsyncClient) -> None:
    hashes_only = (await defender.get(f"/api/alerts/{HASH_ONLY_ALERT}")).json()
    windows = (await defender.get(f"/api/alerts/{WINDOWS_ALERT}")).json()
    file_evidence = hashes_only["evidence"][0]
    user, file = windows["evidence"]
    assert file_evidence["sha256"] == LINUX_DISK_SHA256
    assert file_evidence["fileName"] is None
    assert file_evidence["filePath"] is None
    assert user["entityType"] == "User"
    assert user["accountName"] == "j.doe"
    assert user["sha256"] is None
    assert file["filePath"] == "C:\\Users\\j.doe\\Downloads"
    assert file["fileName"] == "invoice-2291.exe"


async def test_alert_comments_append(defender: httpx.AsyncClient) -> None:
    first = await defender.patch(
        f"/api/alerts/{EICAR_ALERT}", json={"comment": "ANY.RUN: malicious"}
    )
    second = await defender.patch(
        f"/api/alerts/{EICAR_ALERT}", json={"comment": "second note"}
    )
    fetched = (await defender.get(f"/api/alerts/{EICAR_ALERT}")).json()
    state = (await defender.get("/_emulator/state")).json()
    assert first.status_code == 200
    assert [c["comment"] for c in first.json()["comments"]] == ["ANY.RUN: malicious"]
    assert [c["comment"] for c in second.json()["comments"]] == [
        "ANY.RUN: malicious",
        "second note",
    ]
    assert fetched["comments"] == second.json()["comments"]
    assert fetched["comments"][0]["createdBy"]
    assert fetched["comments"][0]["createdTime"].endswith("Z")
    assert fetched["status"] == "New"
    alert_state = next(a for a in state["alerts"] if a["id"] == EICAR_ALERT)
    assert len(alert_state["comments"]) == 2


async def test_alert_resolve(defender: httpx.AsyncClient) -> None:
    resolved = await defender.patch(
        f"/api/alerts/{EICAR_ALERT}",
        json={
            "status": "Resolved",
            "assignedTo": "secops@example.com",
            "classification": "TruePositive",
            "determination": "Malware",
        },
    )
    reopened = await defender.patch(
        f"/api/alerts/{EICAR_ALERT}", json={"Status": "InProgress", "Comment": "again"}
    )
    assert resolved.status_code == 200
    assert resolved.json()["status"] == "Resolved"
    assert resolved.json()["resolvedTime"] is not None
    assert resolved.json()["assignedTo"] == "secops@example.com"
    assert resolved.json()["determination"] == "Malware"
    assert resolved.json()["comments"] == []
    assert reopened.json()["status"] == "InProgress"
    assert reopened.json()["resolvedTime"] is None
    assert [c["comment"] for c in reopened.json()["comments"]] == ["again"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"severity": "High"},
        {"status": "Closed"},
        {"classification": "Benign", "comment": "x"},
        {"comment": 5},
        {"comment": "x", "Comment": "y"},
        ["comment"],
    ],
)
async def test_alert_patch_rejected(defender: httpx.AsyncClient, body: object) -> None:
    response = await defender.patch(f"/api/alerts/{EICAR_ALERT}", json=body)
    alert = (await defender.get(f"/api/alerts/{EICAR_ALERT}")).json()
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidRequestBody"
    # A rejected PATCH changes nothing, not even the comments.
    assert alert["comments"] == []
    assert alert["status"] == "New"


async def test_alert_unknown(defender: httpx.AsyncClient) -> None:
    get = await defender.get("/api/alerts/da000000000000000000_1")
    patch = await defender.patch(
        "/api/alerts/da000000000000000000_1", json={"comment": "x"}
    )
    assert get.status_code == 404
    assert get.json()["error"]["code"] == "ResourceNotFound"
    assert patch.status_code == 404


async def test_alert_reset(defender: httpx.AsyncClient) -> None:
    await defender.patch(f"/api/alerts/{EICAR_ALERT}", json={"comment": "note"})
    await defender.post("/_emulator/reset")
    alert = (await defender.get(f"/api/alerts/{EICAR_ALERT}")).json()
    assert alert["comments"] == []
