"""Fixtures that start the emulators on free loopback ports and stop them afterwards."""

import copy
import json
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
