"""Defender emulator: Live Response actions, from the request to the upload in Azurite.

Linux devices run scripts/liveresponse/anyrun-upload.sh with bash and the
tests/scripts/mdatp stand-in; Windows devices get the emulator's Python
performance of anyrun-upload.ps1. Both upload through a SAS URL from
clients/storage.py into the Azurite of tests/azurite.py.
"""

import asyncio
import json
import os
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from clients.storage import UploadStore
from emulators import RunningEmulators
from emulators.defender import app as defender_app
from emulators.defender import envelope, sessions
from emulators.defender.catalogue import Catalogue
from tests.azurite import CONTAINER, DEV_ACCOUNT, DEV_ACCOUNT_KEY, Azurite
from tests.emulators.conftest import (
    BASH_SCRIPT,
    EICAR,
    EICAR_PATH,
    EICAR_SHA256,
    LINUX_DISK_ID,
    LINUX_DISK_PATH,
    LINUX_DISK_SHA256,
    LINUX_QUARANTINE_ID,
    NO_AUTOMATION_ID,
    POWERSHELL_SCRIPT,
    WINDOWS_ID,
    WINDOWS_OFFLINE_ID,
    WINDOWS_OFFLINE_PATH,
    WINDOWS_OFFLINE_SHA256,
    WINDOWS_PATH,
    WINDOWS_SHA256,
    StartEmulators,
    add_library_file,
    bare_client,
    defender_client,
    run_script,
    script_result,
    start_script,
    wait_for_action,
)

pytestmark = pytest.mark.timeout(60)

# Prints its process id where the test can read it, then waits to be killed.
SLEEP_SCRIPT = b'#!/bin/bash\necho "pid $$" >> "$MDATP_FAKE_LOG"\nsleep 30\n'


def upload_store(azurite: Azurite) -> UploadStore:
    return UploadStore(
        f"http://127.0.0.1:{azurite.port}/{DEV_ACCOUNT}",
        CONTAINER,
        credential=None,
        account_key=DEV_ACCOUNT_KEY,
    )


def upload_argument(azurite: Azurite, blob: str, path: str, sha256: str) -> str:
    """Return the v1 envelope with a create-and-write SAS URL for ``blob``."""
    expires = datetime.now(UTC) + timedelta(minutes=30)
    url = upload_store(azurite).upload_url(blob, expires)
    return envelope.encode({"path": path, "sha256": sha256, "url": url})


def blob_content(azurite: Azurite, blob: str) -> bytes | None:
    client = azurite.blob(blob)
    if not client.exists():
        return None
    return client.download_blob().readall()


def catalogue_content(machine_id: str) -> bytes:
    machine = Catalogue.load().machine(machine_id)
    assert machine is not None
    return machine.files[0].content()


async def uploads(client: httpx.AsyncClient) -> list[dict[str, object]]:
    return (await client.get("/_emulator/uploads")).json()["uploads"]


# Linux: the real bash script


async def test_linux_quarantine_upload(
    defender: httpx.AsyncClient, emulators: RunningEmulators, azurite: Azurite
) -> None:
    blob = azurite.new_blob_name()
    await add_library_file(defender, BASH_SCRIPT)
    argument = upload_argument(azurite, blob, EICAR_PATH, EICAR_SHA256)
    action_id = await start_script(defender, LINUX_QUARANTINE_ID, BASH_SCRIPT, argument)
    action = await wait_for_action(defender, action_id)

    result = await script_result(defender, action_id)
    line = json.loads(result["script_output"])
    attempts = await uploads(defender)
    device = emulators.defender.devices[LINUX_QUARANTINE_ID]
    mdatp_calls = device.mdatp_log.read_text()

    assert action["status"] == "Succeeded"
    assert action["commands"][0]["commandStatus"] == "Completed"
    assert action["commands"][0]["endTime"] is not None
    assert blob_content(azurite, blob) == EICAR
    assert result["script_name"] == BASH_SCRIPT
    assert result["exit_code"] == 0
    assert line == {
        "status": "uploaded",
        "size": len(EICAR),
        "sha256": EICAR_SHA256,
        "source": "quarantine",
    }
    assert attempts == [
        {
            "actionId": action_id,
            "machineId": LINUX_QUARANTINE_ID,
            "path": EICAR_PATH,
            "status": "uploaded",
            "reason": None,
            "source": "quarantine",
            "time": attempts[0]["time"],
        }
    ]
    assert "threat\tquarantine\trestore" in mdatp_calls


async def test_linux_disk_upload(defender: httpx.AsyncClient, azurite: Azurite) -> None:
    blob = azurite.new_blob_name()
    await add_library_file(defender, BASH_SCRIPT)
    argument = upload_argument(azurite, blob, LINUX_DISK_PATH, LINUX_DISK_SHA256)
    action_id = await start_script(defender, LINUX_DISK_ID, BASH_SCRIPT, argument)
    action = await wait_for_action(defender, action_id)
    result = await script_result(defender, action_id)
    assert action["status"] == "Succeeded"
    assert blob_content(azurite, blob) == catalogue_content(LINUX_DISK_ID)
    assert json.loads(result["script_output"])["source"] == "disk"


async def test_linux_hash_mismatch(
    defender: httpx.AsyncClient, emulators: RunningEmulators, azurite: Azurite
) -> None:
    blob = azurite.new_blob_name()
    await add_library_file(defender, BASH_SCRIPT)
    argument = upload_argument(azurite, blob, LINUX_DISK_PATH, "0" * 64)
    action_id = await start_script(defender, LINUX_DISK_ID, BASH_SCRIPT, argument)
    action = await wait_for_action(defender, action_id)
    result = await script_result(defender, action_id)
    line = json.loads(result["script_output"])
    data_folder = str(emulators.defender.data_dir)
    assert action["status"] == "Failed"
    assert action["commands"][0]["commandStatus"] == "Failed"
    assert action["commands"][0]["errors"] == ["The script exited with code 1"]
    assert result["exit_code"] == 1
    assert line["status"] == "failed"
    assert line["reason"] == "hash_mismatch"
    # The message names the device's path, not the emulator's folder for it.
    assert f"SHA-256 of {LINUX_DISK_PATH} is {LINUX_DISK_SHA256}" in line["message"]
    assert data_folder not in result["script_output"]
    assert blob_content(azurite, blob) is None
    assert (await uploads(defender))[0]["reason"] == "hash_mismatch"


async def test_linux_missing_file(
    defender: httpx.AsyncClient, azurite: Azurite
) -> None:
    blob = azurite.new_blob_name()
    await add_library_file(defender, BASH_SCRIPT)
    argument = upload_argument(azurite, blob, "/home/nobody/gone.bin", EICAR_SHA256)
    action_id = await start_script(defender, LINUX_QUARANTINE_ID, BASH_SCRIPT, argument)
    await wait_for_action(defender, action_id)
    line = json.loads((await script_result(defender, action_id))["script_output"])
    assert line["reason"] == "restore_failed"
    assert "/home/nobody/gone.bin" in line["message"]


async def test_linux_script_not_allowed(
    defender: httpx.AsyncClient, emulators: RunningEmulators
) -> None:
    await add_library_file(defender, BASH_SCRIPT, SLEEP_SCRIPT)
    action_id = await start_script(defender, LINUX_DISK_ID, BASH_SCRIPT, "v1.x")
    action = await wait_for_action(defender, action_id)
    device = emulators.defender.devices[LINUX_DISK_ID]
    assert action["status"] == "Failed"
    assert "--defender-run-any-script" in action["commands"][0]["errors"][0]
    assert "pid" not in device.mdatp_log.read_text()
    assert (await uploads(defender))[0]["status"] == "rejected"


async def test_sas_not_loopback_rejected(defender: httpx.AsyncClient) -> None:
    # 0.0.0.0 is not a loopback address, and any connection to it stays local.
    url = "https://0.0.0.0:9/evidence/sample.bin?sv=2021-08-06&sig=abc"
    await add_library_file(defender, BASH_SCRIPT)
    await add_library_file(defender, POWERSHELL_SCRIPT)
    linux_args = envelope.encode(
        {"path": LINUX_DISK_PATH, "sha256": LINUX_DISK_SHA256, "url": url}
    )
    windows_args = envelope.encode(
        {"path": WINDOWS_PATH, "sha256": WINDOWS_SHA256, "url": url}
    )
    linux = await start_script(defender, LINUX_DISK_ID, BASH_SCRIPT, linux_args)
    windows = await start_script(defender, WINDOWS_ID, POWERSHELL_SCRIPT, windows_args)
    linux_action = await wait_for_action(defender, linux)
    windows_action = await wait_for_action(defender, windows)
    attempts = await uploads(defender)
    for action in (linux_action, windows_action):
        assert action["status"] == "Failed"
        assert "0.0.0.0" in action["commands"][0]["errors"][0]  # noqa: S104
        assert "nothing was sent" in action["commands"][0]["errors"][0]
    assert [(a["status"], a["reason"]) for a in attempts] == [
        ("rejected", "not_loopback"),
        ("rejected", "not_loopback"),
    ]


# Windows: the Python performance of anyrun-upload.ps1


async def test_windows_upload(defender: httpx.AsyncClient, azurite: Azurite) -> None:
    blob = azurite.new_blob_name()
    await add_library_file(defender, POWERSHELL_SCRIPT)
    argument = upload_argument(azurite, blob, WINDOWS_PATH, WINDOWS_SHA256)
    action_id = await start_script(defender, WINDOWS_ID, POWERSHELL_SCRIPT, argument)
    action = await wait_for_action(defender, action_id)
    result = await script_result(defender, action_id)
    lines = result["script_output"].splitlines()
    assert action["status"] == "Succeeded"
    assert blob_content(azurite, blob) == catalogue_content(WINDOWS_ID)
    assert result["exit_code"] == 0
    assert lines[0].startswith("Transcript started, output file is C:\\ProgramData")
    assert json.loads(lines[1]) == {
        "status": "uploaded",
        "size": len(catalogue_content(WINDOWS_ID)),
        "sha256": WINDOWS_SHA256,
        "source": "disk",
    }
    assert (await uploads(defender))[0]["path"] == WINDOWS_PATH


async def test_windows_hash_mismatch(
    defender: httpx.AsyncClient, azurite: Azurite
) -> None:
    blob = azurite.new_blob_name()
    await add_library_file(defender, POWERSHELL_SCRIPT)
    argument = upload_argument(azurite, blob, WINDOWS_PATH, "f" * 64)
    action_id = await start_script(defender, WINDOWS_ID, POWERSHELL_SCRIPT, argument)
    action = await wait_for_action(defender, action_id)
    result = await script_result(defender, action_id)
    line = json.loads(result["script_output"].splitlines()[1])
    assert action["status"] == "Failed"
    assert result["exit_code"] == 1
    assert line["reason"] == "hash_mismatch"
    assert blob_content(azurite, blob) is None


async def test_windows_needs_powershell(defender: httpx.AsyncClient) -> None:
    await add_library_file(defender, BASH_SCRIPT)
    action_id = await start_script(defender, WINDOWS_ID, BASH_SCRIPT, "v1.x")
    action = await wait_for_action(defender, action_id)
    assert action["status"] == "Failed"
    assert ".ps1" in action["commands"][0]["errors"][0]


async def test_windows_other_script(defender: httpx.AsyncClient) -> None:
    await add_library_file(defender, "inventory.ps1", b"Get-ChildItem C:\\\n")
    action_id = await start_script(defender, WINDOWS_ID, "inventory.ps1", "v1.x")
    action = await wait_for_action(defender, action_id)
    assert action["status"] == "Failed"
    assert "anyrun-upload.ps1" in action["commands"][0]["errors"][0]


# States: pending, offline, cancelled, timed out


async def test_offline_pending_then_cancel(defender: httpx.AsyncClient) -> None:
    await add_library_file(defender, POWERSHELL_SCRIPT)
    action_id = await start_script(
        defender, WINDOWS_OFFLINE_ID, POWERSHELL_SCRIPT, "v1.x"
    )
    await asyncio.sleep(0.2)  # two emulated minutes at speed 600
    pending = (await defender.get(f"/api/machineactions/{action_id}")).json()
    cancelled = await defender.post(
        f"/api/machineactions/{action_id}/cancel", json={"Comment": "deadline"}
    )
    again = await defender.post(
        f"/api/machineactions/{action_id}/cancel", json={"Comment": "twice"}
    )
    after = await run_script(defender, WINDOWS_OFFLINE_ID, POWERSHELL_SCRIPT, "v1.x")
    assert pending["status"] == "Pending"
    assert pending["commands"][0]["commandStatus"] == "Created"
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "Cancelled"
    assert cancelled.json()["cancellationComment"] == "deadline"
    assert cancelled.json()["cancellationDateTimeUtc"] is not None
    assert again.status_code == 400
    assert "Cancelled" in again.json()["error"]["message"]
    # The device is free for a new session once the old one is cancelled.
    assert after.status_code == 201


async def test_offline_device_comes_online(
    defender: httpx.AsyncClient, azurite: Azurite
) -> None:
    blob = azurite.new_blob_name()
    await add_library_file(defender, POWERSHELL_SCRIPT)
    argument = upload_argument(
        azurite, blob, WINDOWS_OFFLINE_PATH, WINDOWS_OFFLINE_SHA256
    )
    action_id = await start_script(
        defender, WINDOWS_OFFLINE_ID, POWERSHELL_SCRIPT, argument
    )
    await asyncio.sleep(0.1)
    still_pending = (await defender.get(f"/api/machineactions/{action_id}")).json()
    switched = await defender.post(
        f"/_emulator/devices/{WINDOWS_OFFLINE_ID}", json={"online": True}
    )
    action = await wait_for_action(defender, action_id)
    machine = (await defender.get(f"/api/machines/{WINDOWS_OFFLINE_ID}")).json()
    assert still_pending["status"] == "Pending"
    assert switched.json() == {"id": WINDOWS_OFFLINE_ID, "online": True}
    assert action["status"] == "Succeeded"
    assert blob_content(azurite, blob) == catalogue_content(WINDOWS_OFFLINE_ID)
    assert machine["healthStatus"] == "Active"


async def test_device_taken_offline(defender: httpx.AsyncClient) -> None:
    await add_library_file(defender, POWERSHELL_SCRIPT)
    await defender.post(f"/_emulator/devices/{WINDOWS_ID}", json={"online": False})
    action_id = await start_script(defender, WINDOWS_ID, POWERSHELL_SCRIPT, "v1.x")
    await asyncio.sleep(0.1)
    action = (await defender.get(f"/api/machineactions/{action_id}")).json()
    assert action["status"] == "Pending"


@pytest.mark.parametrize(
    "body", [{"online": "yes"}, {"online": True, "extra": 1}, [], {"offline": True}]
)
async def test_device_control_rejected(
    defender: httpx.AsyncClient, body: object
) -> None:
    response = await defender.post(f"/_emulator/devices/{WINDOWS_ID}", json=body)
    unknown = await defender.post(
        "/_emulator/devices/" + "0" * 40, json={"online": True}
    )
    assert response.status_code == 400
    assert unknown.status_code == 404


async def test_offline_times_out(start: StartEmulators) -> None:
    # Three emulated days take about half a wall second at this speed.
    running = await start(speed=500_000)
    async with defender_client(running) as client:
        await add_library_file(client, POWERSHELL_SCRIPT)
        action_id = await start_script(
            client, WINDOWS_OFFLINE_ID, POWERSHELL_SCRIPT, "v1.x"
        )
        action = await wait_for_action(client, action_id, timeout=10)
    assert action["status"] == "TimeOut"
    assert action["commands"][0]["commandStatus"] == "Created"


async def test_cancel_running_script(start: StartEmulators) -> None:
    running = await start(defender_run_any_script=True)
    device = running.defender.devices[LINUX_DISK_ID]
    async with defender_client(running) as client:
        await add_library_file(client, "sleep.sh", SLEEP_SCRIPT)
        action_id = await start_script(client, LINUX_DISK_ID, "sleep.sh")
        await wait_for_action(client, action_id, ("InProgress",))
        pid = await _script_pid(device.mdatp_log)
        cancelled = await client.post(
            f"/api/machineactions/{action_id}/cancel", json={"Comment": "stop"}
        )
        script_killed = await _process_gone(pid)
        attempts = await uploads(client)
    command = cancelled.json()["commands"][0]
    assert cancelled.json()["status"] == "Cancelled"
    assert command["commandStatus"] == "Failed"
    assert command["errors"] == ["The action was cancelled"]
    assert script_killed
    assert [a["status"] for a in attempts] == ["cancelled"]


async def test_stop_kills_script(start: StartEmulators) -> None:
    running = await start(defender_run_any_script=True)
    device = running.defender.devices[LINUX_DISK_ID]
    data_folder = running.defender.data_dir
    async with defender_client(running) as client:
        await add_library_file(client, "sleep.sh", SLEEP_SCRIPT)
        action_id = await start_script(client, LINUX_DISK_ID, "sleep.sh")
        await wait_for_action(client, action_id, ("InProgress",))
        pid = await _script_pid(device.mdatp_log)
    began = time.monotonic()
    await running.stop()
    stop_seconds = time.monotonic() - began
    assert await _process_gone(pid)
    assert stop_seconds < 5
    assert not data_folder.exists()


async def test_script_timeout(
    start: StartEmulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 600 emulated seconds are 0.2 wall seconds at speed 3000, so the floor of
    # 0.5 wall seconds is the timeout.
    monkeypatch.setattr(sessions, "MIN_SCRIPT_WALL_SECONDS", 0.5)
    running = await start(speed=3000, defender_run_any_script=True)
    device = running.defender.devices[LINUX_DISK_ID]
    async with defender_client(running) as client:
        await add_library_file(client, "sleep.sh", SLEEP_SCRIPT)
        began = time.monotonic()
        action_id = await start_script(client, LINUX_DISK_ID, "sleep.sh")
        action = await wait_for_action(client, action_id)
        wall = time.monotonic() - began
        pid = await _script_pid(device.mdatp_log)
        attempts = await uploads(client)
    assert action["status"] == "Failed"
    assert action["commands"][0]["errors"] == ["The script timed out after 600 seconds"]
    assert wall < 5
    assert await _process_gone(pid)
    assert [a["status"] for a in attempts] == ["timed_out"]


async def _script_pid(log_file: os.PathLike[str]) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(log_file, encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("pid "):
                    return int(line.split()[1])
        await asyncio.sleep(0.02)
    pytest.fail("the script did not write its process id")


async def _process_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A killed child stays a zombie until asyncio reaps it.
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                if stat.read().split(")")[-1].split()[0] == "Z":
                    return True
        except OSError:  # reaped between the two checks
            return True
        await asyncio.sleep(0.02)
    return False


# Requests: validation, busy devices, limits


async def test_active_request_exists(defender: httpx.AsyncClient) -> None:
    await add_library_file(defender, POWERSHELL_SCRIPT)
    first = await start_script(defender, WINDOWS_OFFLINE_ID, POWERSHELL_SCRIPT, "v1.x")
    second = await run_script(defender, WINDOWS_OFFLINE_ID, POWERSHELL_SCRIPT, "v1.x")
    other_device = await run_script(defender, WINDOWS_ID, POWERSHELL_SCRIPT, "v1.x")
    error = second.json()["error"]
    assert second.status_code == 400
    assert error["code"] == "ActiveRequestAlreadyExists"
    assert first in error["message"]
    assert other_device.status_code == 201


async def test_run_response_shape(defender: httpx.AsyncClient) -> None:
    await add_library_file(defender, POWERSHELL_SCRIPT)
    response = await run_script(
        defender, WINDOWS_OFFLINE_ID, POWERSHELL_SCRIPT, "v1.abc", comment="note [x]"
    )
    action = response.json()
    assert response.status_code == 201
    assert action["type"] == "LiveResponse"
    assert action["status"] == "Pending"
    assert action["machineId"] == WINDOWS_OFFLINE_ID
    assert action["computerDnsName"] == "ws-0099.corp.example.com"
    assert action["requestorComment"] == "note [x]"
    assert action["@odata.context"].endswith("#MachineActions/$entity")
    assert action["commands"][0]["index"] == 0
    assert action["commands"][0]["commandStatus"] == "Created"
    assert action["commands"][0]["command"]["type"] == "RunScript"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "InvalidRequestBody"),
        ({"commands": [], "Comment": "x"}, "InvalidRequestBody"),
        ({"Commands": [{"type": "runscript", "params": []}]}, "InvalidRequestBody"),
        (
            {
                "Commands": [
                    {
                        "type": "RunScript",
                        "params": [{"key": "ScriptName", "value": POWERSHELL_SCRIPT}],
                    },
                    {"type": "PutFile", "params": [{"key": "FileName", "value": "a"}]},
                ]
            },
            "InvalidRequestBody",
        ),
        (
            {
                "Commands": [
                    {
                        "type": "RunScript",
                        "params": [
                            {"key": "ScriptName", "value": POWERSHELL_SCRIPT},
                            {"key": "Args", "value": "a&b"},
                        ],
                    }
                ]
            },
            "InvalidInput",
        ),
        (
            {
                "Commands": [
                    {
                        "type": "RunScript",
                        "params": [{"key": "ScriptName", "value": "x.ps1"}],
                    }
                ]
            },
            "BadRequest",
        ),
        (
            {
                "Commands": [
                    {"type": "GetFile", "params": [{"key": "Path", "value": "C:\\a"}]}
                ]
            },
            "BadRequest",
        ),
    ],
)
async def test_run_rejected(
    defender: httpx.AsyncClient, body: dict[str, object], code: str
) -> None:
    await add_library_file(defender, POWERSHELL_SCRIPT)
    response = await defender.post(
        f"/api/machines/{WINDOWS_ID}/runliveresponse", json=body
    )
    actions = (await defender.get("/api/machineactions")).json()["value"]
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert actions == []


async def test_run_unknown_machine(defender: httpx.AsyncClient) -> None:
    await add_library_file(defender, POWERSHELL_SCRIPT)
    response = await run_script(defender, "0" * 40, POWERSHELL_SCRIPT, "v1.x")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ResourceNotFound"


async def test_run_no_automation_level(defender: httpx.AsyncClient) -> None:
    await add_library_file(defender, POWERSHELL_SCRIPT)
    response = await run_script(defender, NO_AUTOMATION_ID, POWERSHELL_SCRIPT, "v1.x")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "DisallowedOperation"


async def test_session_limit(
    defender: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(defender_app, "MAX_SESSIONS", 1)
    await add_library_file(defender, POWERSHELL_SCRIPT)
    await start_script(defender, WINDOWS_OFFLINE_ID, POWERSHELL_SCRIPT, "v1.x")
    response = await run_script(defender, WINDOWS_ID, POWERSHELL_SCRIPT, "v1.x")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "TooManyRequests"
    assert response.headers["Retry-After"] == "60"


async def test_put_file_then_run(defender: httpx.AsyncClient) -> None:
    await add_library_file(defender, POWERSHELL_SCRIPT)
    await add_library_file(defender, "notes.txt", b"notes\n")
    body = {
        "Commands": [
            {"type": "PutFile", "params": [{"key": "FileName", "value": "notes.txt"}]},
            {
                "type": "RunScript",
                "params": [
                    {"key": "ScriptName", "value": POWERSHELL_SCRIPT},
                    {"key": "Args", "value": "v1.notjson"},
                ],
            },
            {
                "type": "RunScript",
                "params": [{"key": "ScriptName", "value": POWERSHELL_SCRIPT}],
            },
        ],
        "Comment": "three commands",
    }

    response = await defender.post(
        f"/api/machines/{WINDOWS_ID}/runliveresponse", json=body
    )
    action = await wait_for_action(defender, response.json()["id"])
    put_file_link = await defender.get(
        f"/api/machineactions/{action['id']}/GetLiveResponseResultDownloadLink(index=0)"
    )
    result = await script_result(defender, action["id"], 1)
    statuses = [command["commandStatus"] for command in action["commands"]]

    # The failed RunScript stops the action: the third command never runs.
    assert statuses == ["Completed", "Failed", "Created"]
    assert action["status"] == "Failed"
    assert put_file_link.status_code == 400
    assert "PutFile has no result" in put_file_link.json()["error"]["message"]
    assert (
        json.loads(result["script_output"].splitlines()[1])["reason"] == "bad_argument"
    )


# Machine actions: get, list, cancel, download link


async def test_list_actions_filter(defender: httpx.AsyncClient) -> None:
    await add_library_file(defender, POWERSHELL_SCRIPT)
    first = await start_script(defender, WINDOWS_OFFLINE_ID, POWERSHELL_SCRIPT, "v1.x")
    await defender.post(f"/_emulator/devices/{WINDOWS_ID}", json={"online": False})
    second = await start_script(defender, WINDOWS_ID, POWERSHELL_SCRIPT, "v1.x")
    everything = await defender.get("/api/machineactions")
    by_machine = await defender.get(
        "/api/machineactions",
        params={"$filter": f"machineId eq '{WINDOWS_OFFLINE_ID}'"},
    )
    by_status = await defender.get(
        "/api/machineactions",
        params={"$filter": "status eq 'Pending' and type eq 'LiveResponse'"},
    )
    none_done = await defender.get(
        "/api/machineactions", params={"$filter": "status eq 'Succeeded'"}
    )
    bad = await defender.get(
        "/api/machineactions", params={"$filter": "computerDnsName eq 'x'"}
    )
    assert [a["id"] for a in everything.json()["value"]] == [second, first]
    assert "@odata.context" not in everything.json()["value"][0]
    assert [a["id"] for a in by_machine.json()["value"]] == [first]
    assert len(by_status.json()["value"]) == 2
    assert none_done.json()["value"] == []
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "ODataError"


async def test_action_unknown(defender: httpx.AsyncClient) -> None:
    missing = "5b2a6a3c-0000-4000-8000-000000000000"
    get = await defender.get(f"/api/machineactions/{missing}")
    cancel = await defender.post(
        f"/api/machineactions/{missing}/cancel", json={"Comment": "x"}
    )
    link = await defender.get(
        f"/api/machineactions/{missing}/GetLiveResponseResultDownloadLink(index=0)"
    )
    assert get.status_code == 404
    assert cancel.status_code == 404
    assert link.status_code == 404
    assert get.json()["error"]["code"] == "ResourceNotFound"


@pytest.mark.parametrize("body", [{"comment": "x"}, {"Comment": 5}, ["x"]])
async def test_cancel_bad_body(defender: httpx.AsyncClient, body: object) -> None:
    await add_library_file(defender, POWERSHELL_SCRIPT)
    action_id = await start_script(
        defender, WINDOWS_OFFLINE_ID, POWERSHELL_SCRIPT, "v1.x"
    )
    response = await defender.post(f"/api/machineactions/{action_id}/cancel", json=body)
    action = (await defender.get(f"/api/machineactions/{action_id}")).json()
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidRequestBody"
    assert action["status"] == "Pending"


async def test_download_link(
    defender: httpx.AsyncClient, emulators: RunningEmulators
) -> None:
    await add_library_file(defender, POWERSHELL_SCRIPT)
    action_id = await start_script(defender, WINDOWS_ID, POWERSHELL_SCRIPT, "v1.x")
    await wait_for_action(defender, action_id)
    response = await defender.get(
        f"/api/machineactions/{action_id}/GetLiveResponseResultDownloadLink(index=0)"
    )
    link = response.json()["value"]
    async with bare_client(emulators.defender_url) as bare:
        download = await bare.get(link)
        wrong_token = await bare.get(link.split("?")[0] + "?token=guessed")
        no_token = await bare.get(link.split("?")[0])
    assert response.status_code == 200
    assert response.json()["@odata.context"].endswith("#Edm.String")
    assert link.startswith(emulators.defender_url + "/liveresponse-results/")
    assert "token=" in link
    assert download.status_code == 200
    assert set(download.json()) == {
        "script_name",
        "exit_code",
        "script_output",
        "script_errors",
    }
    assert download.json()["exit_code"] == 1
    assert wrong_token.status_code == 403
    assert no_token.status_code == 403


async def test_download_link_expires(start: StartEmulators) -> None:
    # 30 emulated minutes pass in 0.36 wall seconds at this speed.
    running = await start(speed=5_000)
    async with defender_client(running) as client:
        await add_library_file(client, POWERSHELL_SCRIPT)
        action_id = await start_script(client, WINDOWS_ID, POWERSHELL_SCRIPT, "v1.x")
        await wait_for_action(client, action_id)
        link = (
            await client.get(
                f"/api/machineactions/{action_id}/GetLiveResponseResultDownloadLink(index=0)"
            )
        ).json()["value"]
        await asyncio.sleep(0.5)
        async with bare_client(running.defender_url) as bare:
            expired = await bare.get(link)
        fresh = await script_result(client, action_id)
    assert expired.status_code == 403
    assert "expired" in expired.json()["error"]["message"]
    assert fresh["exit_code"] == 1


async def test_download_link_not_ready(defender: httpx.AsyncClient) -> None:
    await add_library_file(defender, POWERSHELL_SCRIPT)
    action_id = await start_script(
        defender, WINDOWS_OFFLINE_ID, POWERSHELL_SCRIPT, "v1.x"
    )
    pending = await defender.get(
        f"/api/machineactions/{action_id}/GetLiveResponseResultDownloadLink(index=0)"
    )
    out_of_range = await defender.get(
        f"/api/machineactions/{action_id}/GetLiveResponseResultDownloadLink(index=3)"
    )
    wrong_function = await defender.get(
        f"/api/machineactions/{action_id}/GetResult(index=0)"
    )
    assert pending.status_code == 400
    assert "Created" in pending.json()["error"]["message"]
    assert out_of_range.status_code == 400
    assert wrong_function.status_code == 404


async def test_reset_clears_actions(
    defender: httpx.AsyncClient, emulators: RunningEmulators
) -> None:
    await add_library_file(defender, POWERSHELL_SCRIPT)
    await start_script(defender, WINDOWS_OFFLINE_ID, POWERSHELL_SCRIPT, "v1.x")
    await defender.post(f"/_emulator/devices/{LINUX_DISK_ID}", json={"online": False})
    (emulators.defender.devices[LINUX_DISK_ID].disk / "extra.txt").write_text("x")
    await defender.post("/_emulator/reset")
    state = (await defender.get("/_emulator/state")).json()
    online = {m["id"]: m["online"] for m in state["machines"]}
    assert state["actions"] == []
    assert state["library"] == []
    assert state["uploads"] == []
    assert online[LINUX_DISK_ID] is True
    assert online[WINDOWS_OFFLINE_ID] is False
    assert not (emulators.defender.devices[LINUX_DISK_ID].disk / "extra.txt").exists()


async def test_reset_kills_running_script(start: StartEmulators) -> None:
    running = await start(defender_run_any_script=True)
    device = running.defender.devices[LINUX_DISK_ID]
    async with defender_client(running) as client:
        await add_library_file(client, "sleep.sh", SLEEP_SCRIPT)
        action_id = await start_script(client, LINUX_DISK_ID, "sleep.sh")
        await wait_for_action(client, action_id, ("InProgress",))
        pid = await _script_pid(device.mdatp_log)
        await client.post("/_emulator/reset")
        script_killed = await _process_gone(pid)
        await asyncio.sleep(0.1)
        state = (await client.get("/_emulator/state")).json()
        after_reset = await client.get(f"/api/machineactions/{action_id}")
    assert script_killed
    assert state["actions"] == []
    assert state["uploads"] == []
    assert after_reset.status_code == 404
