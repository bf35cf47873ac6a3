"""File activities against the Defender emulator and Azurite: locate, upload, cancel."""

import hashlib
import logging
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import activities.files as files
import clients
from clients.storage import UploadStore

from .conftest import BEARER, activity

RESOLVE = activity(files.resolve_file_source)
ENSURE = activity(files.ensure_live_response_script)
REQUEST = activity(files.request_file_upload)
CHECK = activity(files.check_upload_action)
CANCEL = activity(files.cancel_upload_action)

LINUX_DEVICE = "00000000000000000000000000000000deadbeef"
HUNTED_DEVICE = "7f3c0a9e5d1b4c2a8e6f0d9c7b5a3e1f2d4c6b8a"
OFFLINE_DEVICE = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b"
EICAR_SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
UPDATE_SHA256 = "669d139e777c886cb0bc67fbba78a1bba8002b1566ecbbb2ceb423f37e5df8cf"
UPDATE_SHA1 = "5c9a068eeea3bda2ed951fd62952cfe427ed84d4"


@pytest.fixture
def defender(connector):
    if "defender" not in connector.urls:
        pytest.fail("the Defender emulator is not registered in emulators.runner")
    files._library_checked.clear()
    return connector.urls["defender"]


def defender_get(base, path):
    response = httpx.get(
        f"{base}{path}", headers={"Authorization": f"Bearer {BEARER}"}, timeout=10
    )
    response.raise_for_status()
    return response.json()


def expiry(minutes=10):
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


def upload_request(device, path, sha256, instance_id, script="anyrun-upload.sh"):
    return {
        "device_id": device,
        "script": script,
        "path": path,
        "sha256": sha256,
        "instance_id": instance_id,
        "expires_at": expiry(),
    }


def wait_until_final(action_id, blob, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        answer = CHECK({"action_id": action_id, "blob": blob})
        if answer["blob_exists"] or answer["state"] not in ("Pending", "InProgress"):
            return answer
        assert time.monotonic() < deadline, f"action {action_id} still {answer}"
        time.sleep(0.2)


def test_source_from_entity_directory(defender):
    source = RESOLVE(
        {
            "file_name": "eicar.com",
            "directory": "/home/azureuser",
            "sha256": EICAR_SHA256,
            "device_id": LINUX_DEVICE,
        }
    )
    assert source["status"] == "ok"
    assert source["path"] == "/home/azureuser/eicar.com"
    assert source["os"] == "linux"
    assert source["host"] == "lx-0042"


def test_source_path_from_hunting(defender):
    source = RESOLVE(
        {"file_name": "update.sh", "sha256": UPDATE_SHA256, "device_id": HUNTED_DEVICE}
    )
    assert source["status"] == "ok"
    assert source["path"] == "/tmp/.cache/update.sh"


def test_source_sha256_from_hunting(defender):
    source = RESOLVE(
        {"file_name": "update.sh", "sha1": UPDATE_SHA1, "device_id": HUNTED_DEVICE}
    )
    assert source["sha256"] == UPDATE_SHA256


def test_source_found_by_host_name(defender):
    source = RESOLVE(
        {"file_name": "update.sh", "sha256": UPDATE_SHA256, "host_name": "lx-0077"}
    )
    assert source["device_id"] == HUNTED_DEVICE


def test_unknown_host_is_unavailable(defender):
    source = RESOLVE(
        {"file_name": "a.exe", "sha256": "1" * 64, "host_name": "no-such-host"}
    )
    assert source["status"] == "unavailable"
    assert "no-such-host" in source["reason"]


def test_unhunted_file_is_unavailable(defender):
    source = RESOLVE(
        {"file_name": "ghost.sh", "sha256": "2" * 64, "device_id": HUNTED_DEVICE}
    )
    assert source["status"] == "unavailable"
    assert "advanced hunting" in source["reason"]


def test_script_uploaded_once(defender):
    first = ENSURE({"os": "linux"})
    files._library_checked.clear()
    second = ENSURE({"os": "linux"})
    assert first == {"status": "ok", "script": "anyrun-upload.sh", "uploaded": True}
    assert second["uploaded"] is False


def test_library_holds_current_script(defender):
    ENSURE({"os": "windows"})
    library = defender_get(defender, "/api/libraryfiles")["value"]
    entry = [item for item in library if item["fileName"] == "anyrun-upload.ps1"][0]
    expected = hashlib.sha256((files.SCRIPTS / "anyrun-upload.ps1").read_bytes())
    assert entry["sha256"].lower() == expected.hexdigest()


def test_linux_upload_reaches_blob(defender):
    ENSURE({"os": "linux"})
    instance = "inc-tests-linux:file-00000000000000b1"
    answer = REQUEST(
        upload_request(
            LINUX_DEVICE, "/home/azureuser/eicar.com", EICAR_SHA256, instance
        )
    )
    assert answer["status"] == "requested"
    assert answer["blob"] == f"{instance}/{EICAR_SHA256}"
    final = wait_until_final(answer["action_id"], answer["blob"])
    assert final["blob_exists"] is True
    assert final["size"] == 68
    blob = b"".join(clients.uploads().chunks(answer["blob"]))
    assert hashlib.sha256(blob).hexdigest() == EICAR_SHA256


def test_sas_signature_kept_secret(defender, monkeypatch, caplog):
    urls = []
    original = UploadStore.upload_url

    def capture(self, blob_name, expires_at):
        url = original(self, blob_name, expires_at)
        urls.append(url)
        return url

    monkeypatch.setattr(UploadStore, "upload_url", capture)
    ENSURE({"os": "linux"})
    caplog.set_level(logging.DEBUG)
    instance = "inc-tests-secret:file-00000000000000b2"
    answer = REQUEST(
        upload_request(
            LINUX_DEVICE, "/home/azureuser/eicar.com", EICAR_SHA256, instance
        )
    )
    final = wait_until_final(answer["action_id"], answer["blob"])
    [signature] = parse_qs(urlsplit(urls[0]).query)["sig"]
    action = defender_get(defender, f"/api/machineactions/{answer['action_id']}")
    requests = httpx.get(f"{defender}/_emulator/requests", timeout=10).text
    assert signature not in repr(answer)
    assert signature not in repr(final)
    assert signature not in caplog.text
    assert signature not in repr(action)
    assert signature not in requests


def test_busy_device_reported(defender):
    ENSURE({"os": "windows"})
    path = "C:\\Users\\a.lee\\Downloads\\setup-helper.exe"
    first = REQUEST(
        upload_request(
            OFFLINE_DEVICE,
            path,
            "3" * 64,
            "inc-tests-busy:file-00000000000000c1",
            "anyrun-upload.ps1",
        )
    )
    second = REQUEST(
        upload_request(
            OFFLINE_DEVICE,
            path,
            "3" * 64,
            "inc-tests-busy:file-00000000000000c2",
            "anyrun-upload.ps1",
        )
    )
    CANCEL({"action_id": first["action_id"], "comment": "test cleanup"})
    assert first["status"] == "requested"
    assert second["status"] == "busy"
    assert "ActiveRequestAlreadyExists" in second["reason"]


def test_own_action_adopted(defender):
    ENSURE({"os": "windows"})
    request = upload_request(
        OFFLINE_DEVICE,
        "C:\\Users\\a.lee\\Downloads\\setup-helper.exe",
        "4" * 64,
        "inc-tests-adopt:file-00000000000000d1",
        "anyrun-upload.ps1",
    )
    first = REQUEST(request)
    again = REQUEST(request)
    CANCEL({"action_id": first["action_id"], "comment": "test cleanup"})
    assert again["status"] == "requested"
    assert again["action_id"] == first["action_id"]


def test_offline_action_pending_then_cancelled(defender):
    ENSURE({"os": "windows"})
    answer = REQUEST(
        upload_request(
            OFFLINE_DEVICE,
            "C:\\Users\\a.lee\\Downloads\\setup-helper.exe",
            "5" * 64,
            "inc-tests-offline:file-00000000000000e1",
            "anyrun-upload.ps1",
        )
    )
    pending = CHECK({"action_id": answer["action_id"], "blob": answer["blob"]})
    cancelled = CANCEL({"action_id": answer["action_id"], "comment": "deadline"})
    action = defender_get(defender, f"/api/machineactions/{answer['action_id']}")
    assert pending["state"] == "Pending"
    assert pending["blob_exists"] is False
    assert cancelled["status"] == "cancelled"
    assert action["status"] == "Cancelled"


def test_wrong_hash_fails_with_script_reason(defender):
    ENSURE({"os": "linux"})
    answer = REQUEST(
        upload_request(
            LINUX_DEVICE,
            "/home/azureuser/eicar.com",
            "6" * 64,
            "inc-tests-wrong:file-00000000000000f1",
        )
    )
    final = wait_until_final(answer["action_id"], answer["blob"])
    assert final["blob_exists"] is False
    assert final["state"] == "Failed"
    assert final["script"]["status"] != "unknown"
    assert final["script"]["reason"]
