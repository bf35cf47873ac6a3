"""Sentinel ARM incident routes: GET and PUT with etags, comments, auth, seeding."""

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulators import ConfigError, RunningEmulators
from tests.emulators.conftest import (
    ARM_VERSION,
    BEARER_TOKEN,
    INCIDENT_ID,
    INCIDENT_NAME,
    SECOND_INCIDENT_ID,
    WORKSPACE_PATH,
    StartEmulators,
    bare_client,
    trigger_body,
)

pytestmark = pytest.mark.timeout(30)

COMMENT_PATH = f"{INCIDENT_ID}/comments/2d5e1a9c-94a4-4c43-9a43-4f3a9b6d8e11"


async def get_incident(client: httpx.AsyncClient, path: str = INCIDENT_ID) -> dict:
    response = await client.get(path, params=ARM_VERSION)
    assert response.status_code == 200, response.text
    return response.json()


def put_body(incident: dict[str, Any], **changes: Any) -> dict[str, Any]:
    properties = {**incident["properties"], **changes}
    return {"etag": incident["etag"], "properties": properties}


async def test_incident_get(sentinel: httpx.AsyncClient) -> None:
    incident = await get_incident(sentinel)
    properties = incident["properties"]
    assert set(incident) == {"id", "name", "etag", "type", "properties"}
    assert incident["id"] == INCIDENT_ID
    assert incident["name"] == INCIDENT_NAME
    assert incident["etag"] == '"dc0206ec-0000-0100-0000-6a906cf20000"'
    assert properties["title"] == "User clicked a phishing link"
    assert "relatedEntities" not in properties
    assert "alerts" not in properties
    assert "comments" not in properties


async def test_incident_get_bare_trigger(sentinel: httpx.AsyncClient) -> None:
    incident = await get_incident(sentinel, SECOND_INCIDENT_ID)
    assert incident["properties"]["title"] == "Malware download"


async def test_incident_path_case(sentinel: httpx.AsyncClient) -> None:
    path = INCIDENT_ID.replace("Incidents", "incidents").replace(
        "resourceGroups/rg-secops", "resourcegroups/RG-SECOPS"
    )
    incident = await get_incident(sentinel, path)
    assert incident["name"] == INCIDENT_NAME


async def test_incident_api_version_required(sentinel: httpx.AsyncClient) -> None:
    response = await sentinel.get(INCIDENT_ID)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MissingApiVersionParameter"


async def test_incident_api_version_invalid(sentinel: httpx.AsyncClient) -> None:
    response = await sentinel.get(INCIDENT_ID, params={"api-version": "latest"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidApiVersionParameter"


async def test_incident_unknown(sentinel: httpx.AsyncClient) -> None:
    path = INCIDENT_ID.replace(INCIDENT_NAME, "11111111-2222-3333-4444-555555555555")
    get = await sentinel.get(path, params=ARM_VERSION)
    put = await sentinel.put(
        path,
        params=ARM_VERSION,
        json={"properties": {"title": "x", "severity": "Low", "status": "New"}},
    )
    comment = await sentinel.put(
        f"{path}/comments/c1", params=ARM_VERSION, json={"properties": {"message": "m"}}
    )
    assert get.status_code == 404
    assert get.json()["error"]["code"] == "NotFound"
    assert put.status_code == 404
    assert comment.status_code == 404


async def test_incident_unknown_route(sentinel: httpx.AsyncClient) -> None:
    response = await sentinel.get(f"{WORKSPACE_PATH}/whatever", params=ARM_VERSION)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NotFound"


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", BEARER_TOKEN, f"API-Key {BEARER_TOKEN}"],
    ids=["missing", "wrong", "no-scheme", "api-key"],
)
async def test_incident_auth_rejected(
    emulators: RunningEmulators, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with bare_client(emulators.sentinel_url) as client:
        response = await client.get(INCIDENT_ID, params=ARM_VERSION, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationFailed"
    assert response.json()["error"]["message"]


async def test_incident_put_labels(sentinel: httpx.AsyncClient) -> None:
    incident = await get_incident(sentinel)
    labels = [
        {"labelName": "triage", "labelType": "AutoAssigned"},
        {"labelName": "phishing - ANY.RUN", "labelType": "User"},
        {"labelName": "ANY.RUN"},
    ]
    response = await sentinel.put(
        INCIDENT_ID, params=ARM_VERSION, json=put_body(incident, labels=labels)
    )
    updated = response.json()
    again = await get_incident(sentinel)
    assert response.status_code == 200
    assert updated["etag"] != incident["etag"]
    assert again["etag"] == updated["etag"]
    assert again["properties"]["labels"] == [
        {"labelName": "triage", "labelType": "User"},
        {"labelName": "phishing - ANY.RUN", "labelType": "User"},
        {"labelName": "ANY.RUN", "labelType": "User"},
    ]


async def test_incident_put_fields(sentinel: httpx.AsyncClient) -> None:
    incident = await get_incident(sentinel)
    body = put_body(incident, severity="Medium", status="Active", incidentNumber=999)
    await sentinel.put(INCIDENT_ID, params=ARM_VERSION, json=body)
    properties = (await get_incident(sentinel))["properties"]
    assert properties["severity"] == "Medium"
    assert properties["status"] == "Active"
    assert properties["incidentNumber"] == 9
    assert properties["lastModifiedTimeUtc"] != "2026-08-27T16:59:30.3109456Z"


async def test_incident_put_stale_etag(sentinel: httpx.AsyncClient) -> None:
    stale = await get_incident(sentinel)
    await sentinel.put(INCIDENT_ID, params=ARM_VERSION, json=put_body(stale))
    response = await sentinel.put(
        INCIDENT_ID, params=ARM_VERSION, json=put_body(stale, severity="Low")
    )
    properties = (await get_incident(sentinel))["properties"]
    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "Conflict",
            "message": f"New version of resource '{INCIDENT_ID}' exists. "
            "Data was not saved",
        }
    }
    assert properties["severity"] == "High"


async def test_incident_put_without_etag(sentinel: httpx.AsyncClient) -> None:
    incident = await get_incident(sentinel)
    body = put_body(incident, title="Renamed")
    del body["etag"]
    response = await sentinel.put(INCIDENT_ID, params=ARM_VERSION, json=body)
    assert response.status_code == 200
    assert response.json()["properties"]["title"] == "Renamed"


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({"severity": "High", "status": "New"}, "properties.title"),
        ({"title": "", "severity": "High", "status": "New"}, "properties.title"),
        ({"title": "t", "status": "New"}, "properties.severity"),
        (
            {"title": "t", "severity": "Critical", "status": "New"},
            "properties.severity",
        ),
        ({"title": "t", "severity": "High"}, "properties.status"),
        ({"title": "t", "severity": "High", "status": "Open"}, "properties.status"),
        (
            {"title": "t", "severity": "High", "status": "Closed"},
            "properties.classification",
        ),
        (
            {"title": "t", "severity": "High", "status": "New", "labels": "x"},
            "properties.labels",
        ),
        (
            {"title": "t", "severity": "High", "status": "New", "labels": [{}]},
            "properties.labels[0].labelName",
        ),
    ],
)
async def test_incident_put_invalid(
    sentinel: httpx.AsyncClient, properties: dict[str, Any], field: str
) -> None:
    incident = await get_incident(sentinel)
    body = {"etag": incident["etag"], "properties": properties}
    response = await sentinel.put(INCIDENT_ID, params=ARM_VERSION, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"
    assert response.json()["error"]["message"].startswith(f"{field}: ")


async def test_incident_put_not_json(sentinel: httpx.AsyncClient) -> None:
    response = await sentinel.put(
        INCIDENT_ID,
        params=ARM_VERSION,
        content=b"{",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidRequestContent"


async def test_comment_create_update(sentinel: httpx.AsyncClient) -> None:
    created = await sentinel.put(
        COMMENT_PATH, params=ARM_VERSION, json={"properties": {"message": "first"}}
    )
    updated = await sentinel.put(
        COMMENT_PATH, params=ARM_VERSION, json={"properties": {"message": "second"}}
    )
    listed = (await sentinel.get(f"{INCIDENT_ID}/comments", params=ARM_VERSION)).json()
    incident = await get_incident(sentinel)
    assert created.status_code == 201
    assert updated.status_code == 200
    assert created.json()["properties"]["message"] == "first"
    assert [c["properties"]["message"] for c in listed["value"]] == ["second"]
    assert listed["value"][0]["name"] == COMMENT_PATH.rsplit("/", 1)[-1]
    assert incident["properties"]["additionalData"]["commentsCount"] == 1


async def test_comment_get_single(sentinel: httpx.AsyncClient) -> None:
    await sentinel.put(
        COMMENT_PATH, params=ARM_VERSION, json={"properties": {"message": "hello"}}
    )
    found = await sentinel.get(COMMENT_PATH, params=ARM_VERSION)
    missing = await sentinel.get(f"{INCIDENT_ID}/comments/nope", params=ARM_VERSION)
    assert found.json()["properties"]["message"] == "hello"
    assert missing.status_code == 404


async def test_comment_max_length(sentinel: httpx.AsyncClient) -> None:
    exact = await sentinel.put(
        COMMENT_PATH, params=ARM_VERSION, json={"properties": {"message": "a" * 30000}}
    )
    too_long = await sentinel.put(
        f"{INCIDENT_ID}/comments/other",
        params=ARM_VERSION,
        json={"properties": {"message": "a" * 30001}},
    )
    assert exact.status_code == 201
    assert too_long.status_code == 400
    assert too_long.json() == {
        "error": {
            "code": "BadRequest",
            "message": "Comment length should not exceed 30000 characters",
        }
    }


@pytest.mark.parametrize(
    "body",
    [{}, {"properties": {}}, {"properties": {"message": ""}}, {"message": "flat"}],
    ids=["empty", "no-message", "empty-message", "flat"],
)
async def test_comment_message_required(
    sentinel: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await sentinel.put(COMMENT_PATH, params=ARM_VERSION, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("properties")


async def test_comment_count_limit(sentinel: httpx.AsyncClient) -> None:
    for index in range(100):
        response = await sentinel.put(
            f"{INCIDENT_ID}/comments/c{index}",
            params=ARM_VERSION,
            json={"properties": {"message": f"comment {index}"}},
        )
        assert response.status_code == 201
    extra = await sentinel.put(
        f"{INCIDENT_ID}/comments/c100",
        params=ARM_VERSION,
        json={"properties": {"message": "one too many"}},
    )
    update = await sentinel.put(
        f"{INCIDENT_ID}/comments/c5",
        params=ARM_VERSION,
        json={"properties": {"message": "still editable"}},
    )
    assert extra.status_code == 400
    assert extra.json()["error"]["code"] == "BadRequest"
    assert update.status_code == 200


async def test_incident_entities(sentinel: httpx.AsyncClient) -> None:
    response = await sentinel.post(f"{INCIDENT_ID}/entities", params=ARM_VERSION)
    body = response.json()
    assert response.status_code == 200
    assert body["entities"][0]["kind"] == "Url"
    assert body["metaData"] == [{"entityKind": "Url", "count": 1}]


async def test_incident_control_add(sentinel: httpx.AsyncClient) -> None:
    name = "77777777-0000-4000-8000-000000000007"
    added = await sentinel.post("/_emulator/incidents", json=trigger_body(name, "New"))
    replaced = await sentinel.post("/_emulator/incidents", json=trigger_body(name))
    incident = await get_incident(sentinel, INCIDENT_ID.replace(INCIDENT_NAME, name))
    assert added.status_code == 201
    assert added.json()["created"] is True
    assert replaced.status_code == 200
    assert incident["name"] == name


async def test_incident_control_invalid(sentinel: httpx.AsyncClient) -> None:
    response = await sentinel.post("/_emulator/incidents", json={"object": {"id": "x"}})
    assert response.status_code == 400


async def test_incident_state(sentinel: httpx.AsyncClient) -> None:
    await sentinel.put(
        COMMENT_PATH, params=ARM_VERSION, json={"properties": {"message": "note"}}
    )
    state = (await sentinel.get("/_emulator/state")).json()
    first = next(i for i in state["incidents"] if i["name"] == INCIDENT_NAME)
    assert first["etag"] == '"dc0206ec-0000-0100-0000-6a906cf20000"'
    assert first["labels"] == [{"labelName": "triage", "labelType": "AutoAssigned"}]
    assert [c["message"] for c in first["comments"]] == ["note"]
    assert state["workspaces"] == ["00000000-0000-0000-0000-000000000002"]


async def test_incident_reset(sentinel: httpx.AsyncClient) -> None:
    incident = await get_incident(sentinel)
    await sentinel.put(
        INCIDENT_ID, params=ARM_VERSION, json=put_body(incident, labels=[])
    )
    await sentinel.put(
        COMMENT_PATH, params=ARM_VERSION, json={"properties": {"message": "note"}}
    )
    await sentinel.post("/_emulator/reset")
    restored = await get_incident(sentinel)
    comments = (
        await sentinel.get(f"{INCIDENT_ID}/comments", params=ARM_VERSION)
    ).json()
    assert restored["etag"] == incident["etag"]
    assert restored["properties"]["labels"] == incident["properties"]["labels"]
    assert comments["value"] == []


async def test_incident_seed_invalid(start: StartEmulators, tmp_path: Path) -> None:
    directory = tmp_path / "bad"
    directory.mkdir()
    (directory / "broken.json").write_text(json.dumps({"object": {"id": "/x"}}))
    with pytest.raises(ConfigError, match="broken.json"):
        await start(incidents_dir=directory)


async def test_incident_seed_none(start: StartEmulators) -> None:
    running = await start(incidents_dir=None)
    async with bare_client(running.sentinel_url) as client:
        state = (await client.get("/_emulator/state")).json()
    assert state["incidents"] == []
