"""Fixtures that start the emulators on free loopback ports and stop them afterwards."""

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from emulators import EmulatorConfig, RunningEmulators, start_emulators

API_KEY = "emulator-test-anyrun-key"
BEARER_TOKEN = "emulator-test-bearer-token"
# Fast enough that a 120-second analysis takes 0.2 s of wall time.
FAST_SPEED = 600.0

SUBSCRIPTION_ID = "00000000-0000-0000-0000-000000000001"
WORKSPACE_ID = "00000000-0000-0000-0000-000000000002"
WORKSPACE_PATH = (
    f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg-secops"
    "/providers/Microsoft.OperationalInsights/workspaces/law-secops"
)
INCIDENT_NAME = "63883bf7-5be1-42f4-809a-0417943b837b"
INCIDENT_ID = (
    f"{WORKSPACE_PATH}/providers/Microsoft.SecurityInsights/Incidents/{INCIDENT_NAME}"
)
SECOND_INCIDENT_NAME = "0b4f1c7e-9d2a-4f4e-8a55-3c1d2b9e7f10"
SECOND_INCIDENT_ID = (
    f"{WORKSPACE_PATH}/providers/Microsoft.SecurityInsights/Incidents/"
    f"{SECOND_INCIDENT_NAME}"
)
ARM_VERSION = {"api-version": "2025-09-01"}
TI_VERSION = {"api-version": "2024-02-01-preview"}

PHISHING_URL = (
    "https://login.microsoftonline.example.net/common/oauth2/authorize?client_id=phish"
)
FAKE_UPDATE_URL = "http://update.example.org/flash/install.php"
CLEAN_URL = "https://www.example.com/"
LOADER_URL = "http://files.example.net/invoice-2291.zip"
BROKEN_URL = "http://broken.example.net/"
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"

# Defender catalogue devices (emulators/defender/catalogue.json).
LINUX_QUARANTINE_ID = "00000000000000000000000000000000deadbeef"  # lx-0042, EICAR
LINUX_DISK_ID = "7f3c0a9e5d1b4c2a8e6f0d9c7b5a3e1f2d4c6b8a"  # lx-0077
WINDOWS_ID = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"  # ws-0042
WINDOWS_OFFLINE_ID = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b"  # ws-0099
NO_AUTOMATION_ID = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"  # ws-0500
LINUX_DISK_PATH = "/tmp/.cache/update.sh"
LINUX_DISK_SHA256 = "669d139e777c886cb0bc67fbba78a1bba8002b1566ecbbb2ceb423f37e5df8cf"
EICAR_PATH = "/home/azureuser/eicar.com"
WINDOWS_PATH = "C:\\Users\\j.doe\\Downloads\\invoice-2291.exe"
WINDOWS_SHA256 = "c4b009444b0e84beffe037e4d9aac9d97c063215ae7d926178c08c989025c456"
WINDOWS_OFFLINE_PATH = "C:\\Users\\a.lee\\Downloads\\setup-helper.exe"
WINDOWS_OFFLINE_SHA256 = (
    "21d192517e50f89487ed63f51cbfcd34ecd5b28cbab1668eb40e67a262f62b65"
)
SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "scripts" / "liveresponse"
BASH_SCRIPT = "anyrun-upload.sh"
POWERSHELL_SCRIPT = "anyrun-upload.ps1"
FINAL_ACTION_STATES = ("Succeeded", "Failed", "TimeOut", "Cancelled")

_TRIGGER_BODY: dict[str, Any] = {
    "eventUniqueId": "44b92408-7a21-4811-bc0e-78ec50da00c9",
    "objectSchemaType": "Incident",
    "objectEventType": "Create",
    "workspaceInfo": {
        "SubscriptionId": SUBSCRIPTION_ID,
        "ResourceGroupName": "rg-secops",
        "WorkspaceName": "law-secops",
    },
    "workspaceId": WORKSPACE_ID,
    "object": {
        "id": INCIDENT_ID,
        "name": INCIDENT_NAME,
        "etag": '"dc0206ec-0000-0100-0000-6a906cf20000"',
        "type": "Microsoft.SecurityInsights/Incidents",
        "properties": {
            "title": "User clicked a phishing link",
            "description": "Defender flagged a sign-in page",
            "severity": "High",
            "status": "New",
            "owner": {
                "objectId": None,
                "email": None,
                "assignedTo": None,
                "userPrincipalName": None,
            },
            "labels": [{"labelName": "triage", "labelType": "AutoAssigned"}],
            "createdTimeUtc": "2026-08-27T16:59:30.3109456Z",
            "lastModifiedTimeUtc": "2026-08-27T16:59:30.3109456Z",
            "incidentNumber": 9,
            "additionalData": {"alertsCount": 0, "commentsCount": 0},
            "relatedAnalyticRuleIds": [],
            "alerts": [],
            "bookmarks": [],
            "comments": [],
            "relatedEntities": [
                {
                    "id": f"{WORKSPACE_PATH}/providers/Microsoft.SecurityInsights/"
                    "Entities/e1d3d618-e11f-478b-98e3-bb381539a8e1",
                    "name": "e1d3d618-e11f-478b-98e3-bb381539a8e1",
                    "type": "Microsoft.SecurityInsights/Entities",
                    "kind": "Url",
                    "properties": {"url": PHISHING_URL, "friendlyName": PHISHING_URL},
                }
            ],
        },
    },
}


def trigger_body(name: str = INCIDENT_NAME, title: str | None = None) -> dict[str, Any]:
    """Return an incident trigger body for incident ``name`` in the test workspace."""
    body = copy.deepcopy(_TRIGGER_BODY)
    incident_id = (
        f"{WORKSPACE_PATH}/providers/Microsoft.SecurityInsights/Incidents/{name}"
    )
    body["object"]["id"] = incident_id
    body["object"]["name"] = name
    if title is not None:
        body["object"]["properties"]["title"] = title
    return body


@pytest.fixture
def incidents_dir(tmp_path: Path) -> Path:
    """A directory with two trigger bodies: one wrapped as {"Body": ...}, one bare."""
    directory = tmp_path / "incidents"
    directory.mkdir()
    (directory / "phishing.json").write_text(json.dumps({"Body": trigger_body()}))
    second = trigger_body(SECOND_INCIDENT_NAME, title="Malware download")
    (directory / "malware.json").write_text(json.dumps(second))
    return directory


StartEmulators = Callable[..., Awaitable[RunningEmulators]]


@pytest.fixture
async def start(incidents_dir: Path) -> AsyncIterator[StartEmulators]:
    """Start emulators with test secrets; keyword arguments override config fields."""
    started: list[RunningEmulators] = []

    async def _start(**settings: Any) -> RunningEmulators:
        settings.setdefault("speed", FAST_SPEED)
        settings.setdefault("incidents_dir", incidents_dir)
        config = EmulatorConfig(
            anyrun_api_key=API_KEY, bearer_token=BEARER_TOKEN, **settings
        )
        running = await start_emulators(config)
        started.append(running)
        return running

    yield _start
    for running in started:
        await running.stop()


@pytest.fixture
async def emulators(start: StartEmulators) -> RunningEmulators:
    return await start()


def _client(base_url: str, authorization: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": authorization} if authorization else {}
    return httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=10.0, trust_env=False
    )


@pytest.fixture
async def anyrun(emulators: RunningEmulators) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(emulators.anyrun_url, f"API-Key {API_KEY}") as client:
        yield client


@pytest.fixture
async def sentinel(emulators: RunningEmulators) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(emulators.sentinel_url, f"Bearer {BEARER_TOKEN}") as client:
        yield client


@pytest.fixture
async def defender(emulators: RunningEmulators) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(emulators.defender_url, f"Bearer {BEARER_TOKEN}") as client:
        yield client


def defender_client(running: RunningEmulators) -> httpx.AsyncClient:
    return _client(running.defender_url, f"Bearer {BEARER_TOKEN}")


def anyrun_client(running: RunningEmulators) -> httpx.AsyncClient:
    return _client(running.anyrun_url, f"API-Key {API_KEY}")


def sentinel_client(running: RunningEmulators) -> httpx.AsyncClient:
    return _client(running.sentinel_url, f"Bearer {BEARER_TOKEN}")


def bare_client(base_url: str) -> httpx.AsyncClient:
    return _client(base_url, None)


async def submit_url(client: httpx.AsyncClient, url: str, **params: Any) -> str:
    """Submit ``url`` and return the task id, failing the test on any error."""
    response = await client.post(
        "/v1/analysis", json={"obj_type": "url", "obj_url": url, **params}
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]["taskid"]


async def wait_until_finished(
    client: httpx.AsyncClient, task_id: str, timeout: float = 5.0
) -> dict[str, Any]:
    """Read the monitor stream to its end and return the last event."""
    last: dict[str, Any] = {}
    async with aconnect_sse(
        client, "GET", f"/v1/analysis/monitor/{task_id}", timeout=timeout
    ) as events:
        async for event in events.aiter_sse():
            last = event.json()
    return last


async def add_library_file(
    client: httpx.AsyncClient,
    name: str,
    content: bytes | None = None,
    **fields: str,
) -> httpx.Response:
    """Upload a Live Response library file, by default the repository's script."""
    if content is None:
        content = (SCRIPTS_DIR / name).read_bytes()
    form = {"Description": "test", "OverrideIfExists": "true", **fields}
    return await client.post(
        "/api/libraryfiles",
        files={"file": (name, content, "application/octet-stream")},
        data=form,
    )


async def run_script(
    client: httpx.AsyncClient,
    machine_id: str,
    script: str,
    args: str | None = None,
    comment: str = "emulator test",
) -> httpx.Response:
    params = [{"key": "ScriptName", "value": script}]
    if args is not None:
        params.append({"key": "Args", "value": args})
    body = {"Commands": [{"type": "RunScript", "params": params}], "Comment": comment}
    return await client.post(f"/api/machines/{machine_id}/runliveresponse", json=body)


async def start_script(
    client: httpx.AsyncClient, machine_id: str, script: str, args: str | None = None
) -> str:
    """Start a RunScript and return the action id, failing the test on any error."""
    response = await run_script(client, machine_id, script, args)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def wait_for_action(
    client: httpx.AsyncClient,
    action_id: str,
    states: tuple[str, ...] = FINAL_ACTION_STATES,
    timeout: float = 20.0,
) -> dict[str, Any]:
    """Poll the machine action until its status is one of ``states``."""
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(f"/api/machineactions/{action_id}")
        assert response.status_code == 200, response.text
        action = response.json()
        if action["status"] in states:
            return action
        if time.monotonic() > deadline:
            pytest.fail(f"action {action_id} is {action['status']} after {timeout} s")
        await asyncio.sleep(0.02)


async def script_result(
    client: httpx.AsyncClient, action_id: str, index: int = 0
) -> dict[str, Any]:
    """Fetch a command's result through its download link, as the connector does."""
    link = await client.get(
        f"/api/machineactions/{action_id}/GetLiveResponseResultDownloadLink(index={index})"
    )
    assert link.status_code == 200, link.text
    async with httpx.AsyncClient(trust_env=False, timeout=10.0) as bare:
        download = await bare.get(link.json()["value"])
    assert download.status_code == 200, download.text
    return download.json()
