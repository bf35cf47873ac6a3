"""The /_emulator/faults switch: injected error statuses and slow responses."""

import time

import httpx
import pytest

from tests.emulators.conftest import ARM_VERSION, CLEAN_URL, INCIDENT_ID, WORKSPACE_ID

pytestmark = pytest.mark.timeout(30)

URL_BODY = {"obj_type": "url", "obj_url": CLEAN_URL}


async def test_fault_429_times(anyrun: httpx.AsyncClient) -> None:
    rule = {
        "path_prefix": "/v1/analysis",
        "method": "POST",
        "status": 429,
        "retry_after": 1,
        "times": 2,
    }
    added = await anyrun.post("/_emulator/faults", json=[rule])
    first = await anyrun.post("/v1/analysis", json=URL_BODY)
    other_method = await anyrun.get("/v1/analysis")
    second = await anyrun.post("/v1/analysis", json=URL_BODY)
    third = await anyrun.post("/v1/analysis", json=URL_BODY)
    remaining = (await anyrun.get("/_emulator/faults")).json()["faults"]
    assert added.status_code == 200
    assert first.status_code == 429
    assert first.headers["Retry-After"] == "1"
    assert first.json() == {"error": True, "message": "Limits exceeded"}
    assert other_method.status_code == 200
    assert second.status_code == 429
    assert third.status_code == 200
    assert remaining == []


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_fault_server_errors(anyrun: httpx.AsyncClient, status: int) -> None:
    await anyrun.post(
        "/_emulator/faults", json={"path_prefix": "/v1/user", "status": status}
    )
    faulted = await anyrun.get("/v1/user")
    normal = await anyrun.get("/v1/user")
    assert faulted.status_code == status
    assert faulted.json()["error"] is True
    assert faulted.json()["message"]
    assert "Retry-After" not in faulted.headers
    assert normal.status_code == 200


async def test_fault_remaining_count(anyrun: httpx.AsyncClient) -> None:
    await anyrun.post(
        "/_emulator/faults", json={"path_prefix": "/v1/", "status": 503, "times": 3}
    )
    await anyrun.get("/v1/user")
    faults = (await anyrun.get("/_emulator/faults")).json()["faults"]
    assert faults[0]["remaining"] == 2
    assert faults[0]["method"] is None


async def test_fault_delay(anyrun: httpx.AsyncClient) -> None:
    await anyrun.post(
        "/_emulator/faults", json={"path_prefix": "/v1/user", "delay_seconds": 0.3}
    )
    began = time.monotonic()
    slow = await anyrun.get("/v1/user")
    slow_seconds = time.monotonic() - began
    began = time.monotonic()
    fast = await anyrun.get("/v1/user")
    fast_seconds = time.monotonic() - began
    assert slow.status_code == 200
    assert slow_seconds >= 0.3
    assert fast.status_code == 200
    assert fast_seconds < 0.3


async def test_fault_delayed_status(anyrun: httpx.AsyncClient) -> None:
    await anyrun.post(
        "/_emulator/faults",
        json={"path_prefix": "/v1/user", "status": 502, "delay_seconds": 0.2},
    )
    began = time.monotonic()
    response = await anyrun.get("/v1/user")
    assert response.status_code == 502
    assert time.monotonic() - began >= 0.2


@pytest.mark.parametrize(
    "rule",
    [
        {"status": 429},
        {"path_prefix": "v1", "status": 429},
        {"path_prefix": "/v1/", "status": 200},
        {"path_prefix": "/v1/", "status": 429, "times": 0},
        {"path_prefix": "/v1/", "status": 429, "retry_after": -1},
        {"path_prefix": "/v1/", "delay_seconds": 1000},
        {"path_prefix": "/v1/"},
        {"path_prefix": "/v1/", "status": 429, "colour": "red"},
        {"path_prefix": "/v1/", "kind": "explode"},
        [],
    ],
)
async def test_fault_invalid_rule(anyrun: httpx.AsyncClient, rule: object) -> None:
    response = await anyrun.post("/_emulator/faults", json=rule)
    faults = (await anyrun.get("/_emulator/faults")).json()["faults"]
    assert response.status_code == 400
    assert response.json()["message"]
    assert faults == []


async def test_fault_clear_and_reset(anyrun: httpx.AsyncClient) -> None:
    rule = {"path_prefix": "/v1/", "status": 500, "times": 5}
    await anyrun.post("/_emulator/faults", json=rule)
    cleared = await anyrun.delete("/_emulator/faults")
    after_clear = await anyrun.get("/v1/user")
    await anyrun.post("/_emulator/faults", json=rule)
    await anyrun.post("/_emulator/reset")
    after_reset = await anyrun.get("/v1/user")
    assert cleared.json() == {"faults": []}
    assert after_clear.status_code == 200
    assert after_reset.status_code == 200


async def test_fault_control_untouched(anyrun: httpx.AsyncClient) -> None:
    await anyrun.post("/_emulator/faults", json={"path_prefix": "/", "status": 503})
    state = await anyrun.get("/_emulator/state")
    assert state.status_code == 200


async def test_fault_logged(anyrun: httpx.AsyncClient) -> None:
    await anyrun.post(
        "/_emulator/faults", json={"path_prefix": "/v1/user", "status": 503}
    )
    await anyrun.get("/v1/user")
    log = (await anyrun.get("/_emulator/requests")).json()["requests"]
    assert [(e["path"], e["status"]) for e in log] == [("/v1/user", 503)]


async def test_fault_ti_429_shape(sentinel: httpx.AsyncClient) -> None:
    path = f"/workspaces/{WORKSPACE_ID}/threat-intelligence-stix-objects:upload"
    await sentinel.post(
        "/_emulator/faults",
        json={"path_prefix": "/workspaces/", "status": 429, "retry_after": 7},
    )
    response = await sentinel.post(path, json={})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json() == {
        "statusCode": 429,
        "message": "Rate limit is exceeded. Try again in 7 seconds.",
    }


async def test_fault_arm_shape(sentinel: httpx.AsyncClient) -> None:
    await sentinel.post(
        "/_emulator/faults",
        json={"path_prefix": "/subscriptions/", "method": "PUT", "status": 503},
    )
    put = await sentinel.put(INCIDENT_ID, params=ARM_VERSION, json={})
    get = await sentinel.get(INCIDENT_ID, params=ARM_VERSION)
    assert put.status_code == 503
    assert put.json()["error"]["code"] == "ServiceUnavailable"
    assert get.status_code == 200
