"""POST /_emulator/devices/{id}/files: files added at run time, hunted and uploaded."""

import base64
import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from emulators import RunningEmulators
from emulators.defender import envelope
from tests.azurite import Azurite
from tests.emulators.conftest import (
    BASH_SCRIPT,
    LINUX_DISK_ID,
    LINUX_DISK_PATH,
    LINUX_QUARANTINE_ID,
    POWERSHELL_SCRIPT,
    WINDOWS_ID,
    WINDOWS_PATH,
    add_library_file,
    script_result,
    start_script,
    wait_for_action,
)
from tests.emulators.test_defender_live_response import blob_content, upload_store
from tests.emulators.test_defender_machines import CONNECTOR_QUERY, hunt

pytestmark = pytest.mark.timeout(60)

MAX_CONTENT_BYTES = 50 * 1024**2
LINUX_NEW_PATH = "/home/builder/drop/stage2.bin"
WINDOWS_NEW_PATH = "C:\\Users\\j.doe\\AppData\\Local\\Temp\\stage2.exe"
THREAT_NAME = "Trojan:Win32/Emulated.A"


async def add_file(
    client: httpx.AsyncClient,
    machine_id: str,
    path: str,
    content: bytes,
    location: str = "disk",
    **fields: Any,
) -> httpx.Response:
    body = {
        "path": path,
        "location": location,
        "content_base64": base64.b64encode(content).decode(),
        **fields,
    }
    return await client.post(f"/_emulator/devices/{machine_id}/files", json=body)


def upload_argument(azurite: Azurite, blob: str, fields: dict[str, Any]) -> str:
    """Return the v1 envelope of ``fields`` with a SAS URL for ``blob``."""
    expires = datetime.now(UTC) + timedelta(minutes=30)
    url = upload_store(azurite).upload_url(blob, expires)
    return envelope.encode({**fields, "url": url})


async def hunted_rows(
    client: httpx.AsyncClient, machine_id: str, column: str, value: str
) -> list[dict[str, Any]]:
    query = CONNECTOR_QUERY.format(device=machine_id, column=column, value=value)
    response = await hunt(client, query)
    assert response.status_code == 200, response.text
    return response.json()["Results"]


async def run_upload(
    client: httpx.AsyncClient,
    azurite: Azurite,
    machine_id: str,
    script: str,
    fields: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Run the upload script on the device; return the action, its result, the blob."""
    blob = azurite.new_blob_name()
    await add_library_file(client, script)
    argument = upload_argument(azurite, blob, fields)
    action_id = await start_script(client, machine_id, script, argument)
    action = await wait_for_action(client, action_id)
    return action, await script_result(client, action_id), blob


def output_line(result: dict[str, Any]) -> dict[str, Any]:
    """Return the script's JSON line, after PowerShell's transcript line if any."""
    lines = [line for line in result["script_output"].splitlines() if "{" in line]
    return json.loads(lines[-1])


# Added, hunted and uploaded


async def test_linux_disk_file_end_to_end(
    defender: httpx.AsyncClient, azurite: Azurite
) -> None:
    content = os.urandom(70_000)
    sha256 = hashlib.sha256(content).hexdigest()
    added = await add_file(defender, LINUX_DISK_ID, LINUX_NEW_PATH, content)
    by_hash = await hunted_rows(defender, LINUX_DISK_ID, "SHA256", sha256)
    by_path = await hunted_rows(defender, LINUX_DISK_ID, "FolderPath", LINUX_NEW_PATH)
    assert added.status_code == 201, added.text
    assert len(by_hash) == 1
    # The connector takes the path from the hunting row, so this run does too.
    fields = {"path": by_hash[0]["FolderPath"], "sha256": sha256}
    action, result, blob = await run_upload(
        defender, azurite, LINUX_DISK_ID, BASH_SCRIPT, fields
    )
    assert added.json() == {
        "machineId": LINUX_DISK_ID,
        "path": LINUX_NEW_PATH,
        "sha256": sha256,
        "size": len(content),
    }
    assert by_hash == [
        {
            "FolderPath": LINUX_NEW_PATH,
            "FileName": "stage2.bin",
            "SHA256": sha256,
            "SHA1": hashlib.sha1(content).hexdigest(),  # noqa: S324
        }
    ]
    assert by_path == by_hash
    assert action["status"] == "Succeeded", result
    assert output_line(result)["source"] == "disk"
    assert blob_content(azurite, blob) == content


async def test_linux_quarantine_file(
    defender: httpx.AsyncClient, azurite: Azurite
) -> None:
    content = b"#!/bin/sh\necho quarantined sample\n"
    sha256 = hashlib.sha256(content).hexdigest()
    added = await add_file(
        defender, LINUX_QUARANTINE_ID, LINUX_NEW_PATH, content, "quarantine"
    )
    fields = {"path": LINUX_NEW_PATH, "sha256": sha256}
    action, result, blob = await run_upload(
        defender, azurite, LINUX_QUARANTINE_ID, BASH_SCRIPT, fields
    )
    assert added.status_code == 201, added.text
    assert action["status"] == "Succeeded", result
    assert output_line(result)["source"] == "quarantine"
    assert blob_content(azurite, blob) == content


async def test_windows_disk_file(defender: httpx.AsyncClient, azurite: Azurite) -> None:
    content = os.urandom(5000)
    sha256 = hashlib.sha256(content).hexdigest()
    added = await add_file(defender, WINDOWS_ID, WINDOWS_NEW_PATH, content)
    rows = await hunted_rows(defender, WINDOWS_ID, "SHA256", sha256)
    fields = {"path": WINDOWS_NEW_PATH, "sha256": sha256}
    action, result, blob = await run_upload(
        defender, azurite, WINDOWS_ID, POWERSHELL_SCRIPT, fields
    )
    assert added.status_code == 201, added.text
    assert [row["FolderPath"] for row in rows] == [WINDOWS_NEW_PATH]
    assert action["status"] == "Succeeded", result
    assert output_line(result)["source"] == "disk"
    assert blob_content(azurite, blob) == content


async def test_windows_quarantine_by_threat(
    defender: httpx.AsyncClient, azurite: Azurite
) -> None:
    content = os.urandom(3000)
    sha256 = hashlib.sha256(content).hexdigest()
    added = await add_file(
        defender,
        WINDOWS_ID,
        WINDOWS_NEW_PATH,
        content,
        "quarantine",
        threatName=THREAT_NAME,
    )
    # The path differs, so only the threat name leads to the quarantined file.
    fields = {
        "path": "C:\\Users\\j.doe\\Desktop\\renamed.exe",
        "sha256": sha256,
        "threat_name": THREAT_NAME,
    }
    action, result, blob = await run_upload(
        defender, azurite, WINDOWS_ID, POWERSHELL_SCRIPT, fields
    )
    assert added.status_code == 201, added.text
    assert action["status"] == "Succeeded", result
    assert output_line(result)["source"] == "quarantine"
    assert blob_content(azurite, blob) == content


async def test_added_file_in_state(
    defender: httpx.AsyncClient, emulators: RunningEmulators
) -> None:
    content = b"sample"
    await add_file(defender, LINUX_DISK_ID, LINUX_NEW_PATH, content)
    state = (await defender.get("/_emulator/state")).json()
    machine = next(m for m in state["machines"] if m["id"] == LINUX_DISK_ID)
    device = emulators.defender.devices[LINUX_DISK_ID]
    assert machine["addedFiles"] == [
        {
            "path": LINUX_NEW_PATH,
            "location": "disk",
            "sha256": hashlib.sha256(content).hexdigest(),
            "size": len(content),
        }
    ]
    assert (device.disk / LINUX_NEW_PATH.lstrip("/")).read_bytes() == content


async def test_reset_removes_added_file(
    defender: httpx.AsyncClient, emulators: RunningEmulators
) -> None:
    content = b"gone after reset"
    sha256 = hashlib.sha256(content).hexdigest()
    await add_file(defender, LINUX_DISK_ID, LINUX_NEW_PATH, content)
    await defender.post("/_emulator/reset")
    rows = await hunted_rows(defender, LINUX_DISK_ID, "SHA256", sha256)
    catalogue_rows = await hunted_rows(
        defender, LINUX_DISK_ID, "FolderPath", LINUX_DISK_PATH
    )
    device = emulators.defender.devices[LINUX_DISK_ID]
    on_disk = (device.disk / LINUX_NEW_PATH.lstrip("/")).exists()
    state = (await defender.get("/_emulator/state")).json()
    again = await add_file(defender, LINUX_DISK_ID, LINUX_NEW_PATH, content)
    assert rows == []
    assert len(catalogue_rows) == 1
    assert not on_disk
    assert all(machine["addedFiles"] == [] for machine in state["machines"])
    assert again.status_code == 201


# Rejected requests


@pytest.mark.parametrize(
    ("machine_id", "path"),
    [
        (LINUX_DISK_ID, LINUX_NEW_PATH),
        (LINUX_DISK_ID, LINUX_DISK_PATH),  # a catalogue file
        (LINUX_DISK_ID, "/tmp/.cache"),  # a folder
        (LINUX_DISK_ID, f"{LINUX_DISK_PATH}/inner.bin"),  # below a file
        (WINDOWS_ID, WINDOWS_PATH.upper()),  # Windows paths ignore case
    ],
)
async def test_duplicate_path_conflict(
    defender: httpx.AsyncClient, machine_id: str, path: str
) -> None:
    await add_file(defender, LINUX_DISK_ID, LINUX_NEW_PATH, b"first")
    response = await add_file(defender, machine_id, path, b"second")
    assert response.status_code == 409
    assert path in response.json()["message"]


async def test_unknown_machine(defender: httpx.AsyncClient) -> None:
    response = await add_file(defender, "0" * 40, LINUX_NEW_PATH, b"x")
    assert response.status_code == 404
    assert "unknown machine" in response.json()["message"]


def body(**changes: Any) -> dict[str, Any]:
    fields = {"path": LINUX_NEW_PATH, "location": "disk", "content_base64": "eA=="}
    fields.update(changes)
    return {key: value for key, value in fields.items() if value is not None}


@pytest.mark.parametrize(
    ("machine_id", "payload", "fragment"),
    [
        (LINUX_DISK_ID, body(path="relative/x.bin"), "not a full Linux path"),
        (LINUX_DISK_ID, body(path="/home/a/../b.bin"), "not a full Linux path"),
        (LINUX_DISK_ID, body(path="/home//b.bin"), "not a full Linux path"),
        (LINUX_DISK_ID, body(path="/home/b/"), "not a full Linux path"),
        (LINUX_DISK_ID, body(path="/"), "not a full Linux path"),
        (LINUX_DISK_ID, body(path="C:\\x.exe"), "not a full Linux path"),
        (LINUX_DISK_ID, body(path="/tmp/a\nb"), "control characters"),
        (LINUX_DISK_ID, body(path=None), "path is required"),
        (WINDOWS_ID, body(), "not a full Windows path"),
        (WINDOWS_ID, body(path="C:/Users/x.exe"), "not a full Windows path"),
        (WINDOWS_ID, body(path="C:\\a\\..\\b.exe"), "not a full Windows path"),
        (WINDOWS_ID, body(path="\\\\server\\share\\b.exe"), "not a full Windows path"),
        (WINDOWS_ID, body(path="C:\\a\\b?.exe"), "not a full Windows path"),
        (WINDOWS_ID, body(path="C:\\a\\b.exe."), "not a full Windows path"),
        (LINUX_DISK_ID, body(location="memory"), "location must be one of"),
        (LINUX_DISK_ID, body(location=None), "location must be one of"),
        (LINUX_DISK_ID, body(threatName="Virus:X"), "threatName is allowed only"),
        (
            LINUX_DISK_ID,
            body(location="quarantine", threatName=""),
            "threatName must be a non-empty string",
        ),
        (LINUX_DISK_ID, body(content_base64="@@@@"), "not valid base64"),
        (LINUX_DISK_ID, body(content_base64="eA="), "not valid base64"),
        (LINUX_DISK_ID, body(content_base64=None), "content_base64 is required"),
        (LINUX_DISK_ID, body(colour="red"), "unknown fields ['colour']"),
        (LINUX_DISK_ID, ["not", "an", "object"], "the body must be"),
    ],
)
async def test_invalid_request(
    defender: httpx.AsyncClient, machine_id: str, payload: Any, fragment: str
) -> None:
    response = await defender.post(
        f"/_emulator/devices/{machine_id}/files", json=payload
    )
    state = (await defender.get("/_emulator/state")).json()
    assert response.status_code == 400
    assert fragment in response.json()["message"]
    assert all(machine["addedFiles"] == [] for machine in state["machines"])


async def test_invalid_json(defender: httpx.AsyncClient) -> None:
    response = await defender.post(
        f"/_emulator/devices/{LINUX_DISK_ID}/files", content=b"{not json"
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["message"]


async def test_content_over_limit(defender: httpx.AsyncClient) -> None:
    response = await add_file(
        defender, LINUX_DISK_ID, LINUX_NEW_PATH, bytes(MAX_CONTENT_BYTES + 1)
    )
    assert response.status_code == 413
    assert f"{MAX_CONTENT_BYTES + 1} bytes" in response.json()["message"]
    assert "50 MiB" in response.json()["message"]
