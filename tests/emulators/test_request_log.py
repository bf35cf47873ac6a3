"""The request log: method, path, status and time only, never secrets or queries."""

import httpx
import pytest

from tests.emulators.conftest import (
    API_KEY,
    ARM_VERSION,
    BEARER_TOKEN,
    CLEAN_URL,
    INCIDENT_ID,
    TI_VERSION,
    WORKSPACE_ID,
)

pytestmark = pytest.mark.timeout(30)


async def test_log_anyrun_entries(anyrun: httpx.AsyncClient) -> None:
    await anyrun.post("/v1/analysis", json={"obj_type": "url", "obj_url": CLEAN_URL})
    await anyrun.get("/v1/analysis", params={"team": "false", "skip": 0, "limit": 25})
    await anyrun.get("/v1/user", headers={"Authorization": "API-Key wrong"})
    log = (await anyrun.get("/_emulator/requests")).json()["requests"]
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("POST", "/v1/analysis", 200),
        ("GET", "/v1/analysis", 200),
        ("GET", "/v1/user", 401),
    ]
    assert all(set(entry) == {"method", "path", "status", "time"} for entry in log)


async def test_log_anyrun_no_secrets(anyrun: httpx.AsyncClient) -> None:
    await anyrun.post(
        "/v1/analysis",
        json={"obj_type": "url", "obj_url": CLEAN_URL, "user_tags": "secret-tag"},
    )
    await anyrun.get("/v1/analysis", params={"team": "false", "limit": 5})
    text = (await anyrun.get("/_emulator/requests")).text
    assert API_KEY not in text
    assert "Authorization" not in text
    assert "API-Key" not in text
    assert "?" not in text
    assert "limit" not in text
    assert "secret-tag" not in text


async def test_log_sentinel_no_secrets(sentinel: httpx.AsyncClient) -> None:
    await sentinel.get(INCIDENT_ID, params=ARM_VERSION)
    await sentinel.post(
        f"/workspaces/{WORKSPACE_ID}/threat-intelligence-stix-objects:upload",
        params=TI_VERSION,
        json={"sourcesystem": "s", "stixobjects": []},
    )
    body = (await sentinel.get("/_emulator/requests")).json()
    text = (await sentinel.get("/_emulator/requests")).text
    assert [entry["status"] for entry in body["requests"]] == [200, 400]
    assert body["requests"][0]["path"] == INCIDENT_ID
    assert BEARER_TOKEN not in text
    assert "Bearer" not in text
    assert "api-version" not in text
    assert "sourcesystem" not in text


async def test_log_skips_control(anyrun: httpx.AsyncClient) -> None:
    await anyrun.get("/_emulator/state")
    await anyrun.get("/_emulator/health")
    log = (await anyrun.get("/_emulator/requests")).json()["requests"]
    assert log == []


async def test_log_unknown_route(sentinel: httpx.AsyncClient) -> None:
    await sentinel.get("/nothing", params=ARM_VERSION)
    log = (await sentinel.get("/_emulator/requests")).json()["requests"]
    assert [(e["path"], e["status"]) for e in log] == [("/nothing", 404)]
