"""Sentinel TI upload: validation, partial errors, limits, upserts and throttling."""

import asyncio
import re
import uuid
from typing import Any

import httpx
import pytest

from tests.emulators.conftest import (
    BEARER_TOKEN,
    TI_VERSION,
    WORKSPACE_ID,
    StartEmulators,
    sentinel_client,
)

pytestmark = pytest.mark.timeout(30)

UPLOAD_PATH = f"/workspaces/{WORKSPACE_ID}/threat-intelligence-stix-objects:upload"


def indicator(value: str = "203.0.113.45", **changes: Any) -> dict[str, Any]:
    body = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, value)}",
        "created": "2026-08-27T16:59:30.310Z",
        "modified": "2026-08-27T16:59:30.310Z",
        "name": f"ANY.RUN IOC {value}",
        "pattern": f"[ipv4-addr:value = '{value}']",
        "pattern_type": "stix",
        "valid_from": "2026-08-27T16:59:30.310Z",
        "valid_until": "2027-08-27T16:59:30.310Z",
        "confidence": 100,
        "labels": ["ANY.RUN"],
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}


async def upload(
    client: httpx.AsyncClient, objects: list[Any], source: str = "ANY.RUN-Sandbox"
) -> httpx.Response:
    return await client.post(
        UPLOAD_PATH,
        params=TI_VERSION,
        json={"sourcesystem": source, "stixobjects": objects},
    )


async def stored_indicators(client: httpx.AsyncClient) -> dict[str, Any]:
    state = (await client.get("/_emulator/state")).json()
    return state["indicators"].get(WORKSPACE_ID, {})


async def test_ti_upload_valid(sentinel: httpx.AsyncClient) -> None:
    objects = [
        indicator("203.0.113.45"),
        indicator(
            "sha",
            pattern="[file:hashes.'SHA-256' = "
            "'275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f']",
        ),
        indicator("domain", pattern="[domain-name:value = 'cdn.example.org']"),
        indicator("url", pattern="[url:value = 'http://files.example.net/a.zip']"),
    ]
    response = await upload(sentinel, objects)
    stored = await stored_indicators(sentinel)
    assert response.status_code == 200
    assert response.content == b""
    assert len(stored) == 4
    assert stored[objects[0]["id"]]["pattern"] == "[ipv4-addr:value = '203.0.113.45']"
    assert stored[objects[0]["id"]]["sourcesystem"] == "ANY.RUN-Sandbox"


async def test_ti_partial_errors(sentinel: httpx.AsyncClient) -> None:
    objects = [
        indicator("198.51.100.1"),
        indicator("198.51.100.2", id=None),
        indicator("198.51.100.3", pattern="ipv4-addr:value = '198.51.100.3'"),
        indicator("198.51.100.4"),
    ]
    response = await upload(sentinel, objects)
    errors = response.json()["errors"]
    stored = await stored_indicators(sentinel)
    assert response.status_code == 200
    assert [error["recordIndex"] for error in errors] == [1, 2]
    assert errors[0]["errorMessages"] == [
        "Error for Property=id: Required property is missing. Actual value: NULL."
    ]
    assert errors[1]["errorMessages"][0].startswith("Error for Property=pattern:")
    assert set(stored) == {objects[0]["id"], objects[3]["id"]}


@pytest.mark.parametrize(
    ("changes", "property_name"),
    [
        ({"type": None}, "type"),
        ({"type": "malware"}, "type"),
        ({"id": "indicator-1234"}, "id"),
        ({"id": "identity--6b2b7c1e-8c3c-4a7b-9a55-0f6b0e0c9a11"}, "id"),
        ({"spec_version": "3.0"}, "spec_version"),
        ({"created": None}, "created"),
        ({"created": "27/08/2026"}, "created"),
        ({"modified": None}, "modified"),
        ({"modified": "2020-01-01T00:00:00Z"}, "modified"),
        ({"pattern": None}, "pattern"),
        ({"pattern": "[ipv4-addr:value = "}, "pattern"),
        ({"pattern": "[file:hashes.'SHA-256' = 'abc']"}, "pattern"),
        ({"pattern_type": None}, "pattern_type"),
        ({"pattern_type": "regex"}, "pattern_type"),
        ({"valid_from": None}, "valid_from"),
        ({"valid_from": "2026-08-27 16:59:30"}, "valid_from"),
        ({"valid_until": "2020-01-01T00:00:00Z"}, "valid_until"),
        ({"confidence": 101}, "confidence"),
        ({"labels": "ANY.RUN"}, "labels"),
    ],
)
async def test_ti_invalid_object(
    sentinel: httpx.AsyncClient, changes: dict[str, Any], property_name: str
) -> None:
    response = await upload(sentinel, [indicator(**changes)])
    errors = response.json()["errors"]
    assert response.status_code == 200
    assert errors[0]["recordIndex"] == 0
    assert any(
        message.startswith(f"Error for Property={property_name}:")
        for message in errors[0]["errorMessages"]
    )
    assert await stored_indicators(sentinel) == {}


async def test_ti_other_types(sentinel: httpx.AsyncClient) -> None:
    identity = {
        "type": "identity",
        "spec_version": "2.1",
        "id": "identity--6b2b7c1e-8c3c-4a7b-9a55-0f6b0e0c9a11",
        "created": "2026-08-27T16:59:30Z",
        "modified": "2026-08-27T16:59:30Z",
        "name": "ANY.RUN",
        "identity_class": "organization",
    }
    relationship = {
        "type": "relationship",
        "id": "relationship--1f2d3c4b-5a69-4788-9a0b-1c2d3e4f5a6b",
        "created": "2026-08-27T16:59:30Z",
        "modified": "2026-08-27T16:59:30Z",
        "relationship_type": "attributed-to",
        "source_ref": indicator()["id"],
        "target_ref": identity["id"],
    }
    response = await upload(sentinel, [identity, relationship, {"type": "identity"}])
    state = (await sentinel.get("/_emulator/state")).json()
    assert [error["recordIndex"] for error in response.json()["errors"]] == [2]
    assert set(state["otherStixObjects"][WORKSPACE_ID]) == {
        identity["id"],
        relationship["id"],
    }


async def test_ti_max_objects(sentinel: httpx.AsyncClient) -> None:
    hundred = [indicator(f"192.0.2.{i}") for i in range(100)]
    accepted = await upload(sentinel, hundred)
    too_many = await upload(sentinel, hundred + [indicator("198.51.100.200")])
    empty = await upload(sentinel, [])
    assert accepted.status_code == 200
    assert len(await stored_indicators(sentinel)) == 100
    assert too_many.status_code == 400
    assert too_many.json()["error"]["message"].startswith("stixobjects: ")
    assert empty.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"stixobjects": [indicator()]},
        {"sourcesystem": "", "stixobjects": [indicator()]},
        {"sourcesystem": "Microsoft Sentinel", "stixobjects": [indicator()]},
        {"sourcesystem": "ANY.RUN-Sandbox"},
        {"sourcesystem": "ANY.RUN-Sandbox", "stixobjects": indicator()},
        [indicator()],
    ],
    ids=[
        "no-source",
        "empty-source",
        "restricted-source",
        "no-objects",
        "not-list",
        "array",
    ],
)
async def test_ti_bad_body(sentinel: httpx.AsyncClient, body: Any) -> None:
    response = await sentinel.post(UPLOAD_PATH, params=TI_VERSION, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["message"]


async def test_ti_upsert_by_id(sentinel: httpx.AsyncClient) -> None:
    first = indicator("203.0.113.45")
    second = indicator(
        "203.0.113.45",
        pattern="[ipv4-addr:value = '203.0.113.46']",
        modified="2026-08-28T10:00:00.000Z",
    )
    await upload(sentinel, [first])
    await upload(sentinel, [second])
    stored = await stored_indicators(sentinel)
    assert list(stored) == [first["id"]]
    assert stored[first["id"]]["pattern"] == "[ipv4-addr:value = '203.0.113.46']"
    assert stored[first["id"]]["uploads"] == 2


async def test_ti_unknown_workspace(sentinel: httpx.AsyncClient) -> None:
    response = await sentinel.post(
        "/workspaces/99999999-9999-9999-9999-999999999999"
        "/threat-intelligence-stix-objects:upload",
        params=TI_VERSION,
        json={"sourcesystem": "ANY.RUN-Sandbox", "stixobjects": [indicator()]},
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NotFound"


async def test_ti_api_version(sentinel: httpx.AsyncClient) -> None:
    missing = await sentinel.post(
        UPLOAD_PATH, json={"sourcesystem": "s", "stixobjects": [indicator()]}
    )
    wrong = await sentinel.post(
        UPLOAD_PATH,
        params={"api-version": "2022-07-01"},
        json={"sourcesystem": "s", "stixobjects": [indicator()]},
    )
    assert missing.status_code == 400
    assert wrong.status_code == 400


async def test_ti_rate_limit(start: StartEmulators) -> None:
    running = await start(ti_rate_limit=3, speed=1.0)
    async with sentinel_client(running) as client:
        accepted = [(await upload(client, [indicator()])).status_code for _ in range(3)]
        throttled = await upload(client, [indicator()])
    retry_after = int(throttled.headers["Retry-After"])
    assert accepted == [200, 200, 200]
    assert throttled.status_code == 429
    assert throttled.json()["statusCode"] == 429
    assert re.fullmatch(
        r"Rate limit is exceeded\. Try again in \d+ seconds\.",
        throttled.json()["message"],
    )
    assert 1 <= retry_after <= 60
    assert f"in {retry_after} seconds" in throttled.json()["message"]


async def test_ti_rate_window_emulated(start: StartEmulators) -> None:
    # The window is 60 emulated seconds: 0.5 s of wall time at speed 120.
    running = await start(ti_rate_limit=1, speed=120.0)
    async with sentinel_client(running) as client:
        first = await upload(client, [indicator()])
        second = await upload(client, [indicator()])
        await asyncio.sleep(0.6)
        third = await upload(client, [indicator()])
    assert first.status_code == 200
    assert second.status_code == 429
    assert third.status_code == 200


async def test_ti_rate_limit_survives_a_new_token(start: StartEmulators) -> None:
    """The budget is the application's: a renewed token does not reset it."""
    running = await start(ti_rate_limit=2, speed=1.0)
    async with sentinel_client(running) as client:
        accepted = [(await upload(client, [indicator()])).status_code for _ in range(2)]
        renewed = await client.post(
            UPLOAD_PATH,
            params=TI_VERSION,
            headers={"Authorization": f"Bearer {BEARER_TOKEN}.renewed-0001"},
            json={"sourcesystem": "ANY.RUN-Sandbox", "stixobjects": [indicator()]},
        )
    assert accepted == [200, 200]
    assert renewed.status_code == 429
