"""ANY.RUN plan limits: parallel analyses, the daily quota and /v1/user."""

import asyncio

import httpx
import pytest

from tests.emulators.conftest import (
    CLEAN_URL,
    StartEmulators,
    anyrun_client,
    submit_url,
)

pytestmark = pytest.mark.timeout(30)


async def test_limits_parallel_exceeded(start: StartEmulators) -> None:
    running = await start(parallel_limit=2, speed=1.0)
    async with anyrun_client(running) as client:
        await submit_url(client, CLEAN_URL)
        await submit_url(client, CLEAN_URL)
        response = await client.post(
            "/v1/analysis", json={"obj_type": "url", "obj_url": CLEAN_URL}
        )
        limits = (await client.get("/v1/user")).json()["data"]["limits"]
    assert response.status_code == 429
    assert response.json() == {"error": True, "message": "Limits exceeded"}
    assert limits["parallels"] == {"total": 2, "available": 0}


async def test_limits_slot_freed(start: StartEmulators) -> None:
    # 10 emulated seconds at speed 20 last 0.5 s of wall time.
    running = await start(parallel_limit=1, speed=20.0)
    async with anyrun_client(running) as client:
        await submit_url(client, CLEAN_URL, opt_timeout=10)
        blocked = await client.post(
            "/v1/analysis", json={"obj_type": "url", "obj_url": CLEAN_URL}
        )
        await asyncio.sleep(0.7)
        freed = await client.post(
            "/v1/analysis", json={"obj_type": "url", "obj_url": CLEAN_URL}
        )
    assert blocked.status_code == 429
    assert freed.status_code == 200


async def test_limits_daily_quota(start: StartEmulators) -> None:
    running = await start(daily_quota=2)
    async with anyrun_client(running) as client:
        await submit_url(client, CLEAN_URL, opt_timeout=10)
        await submit_url(client, CLEAN_URL, opt_timeout=10)
        await asyncio.sleep(0.1)
        response = await client.post(
            "/v1/analysis", json={"obj_type": "url", "obj_url": CLEAN_URL}
        )
        limits = (await client.get("/v1/user")).json()["data"]["limits"]
    assert response.status_code == 429
    assert response.json()["error"] is True
    assert response.json()["message"].startswith("Limits exceeded")
    assert "daily" in response.json()["message"]
    assert limits["api"]["day"] == 2


async def test_limits_validation_first(start: StartEmulators) -> None:
    # A bad parameter is reported even when no slot is free.
    running = await start(parallel_limit=0)
    async with anyrun_client(running) as client:
        response = await client.post(
            "/v1/analysis", json={"obj_type": "url", "obj_url": "x"}
        )
    assert response.status_code == 400


async def test_limits_user_shape(anyrun: httpx.AsyncClient) -> None:
    body = (await anyrun.get("/v1/user")).json()
    limits = body["data"]["limits"]
    assert body["error"] is False
    assert limits["web"] == {"minute": -1, "hour": -1, "day": -1, "month": -1}
    assert limits["api"] == {"minute": -1, "hour": -1, "day": -1, "month": -1}
    assert limits["parallels"] == {"total": 5, "available": 5}


async def test_limits_available_counts(start: StartEmulators) -> None:
    running = await start(parallel_limit=3, speed=1.0)
    async with anyrun_client(running) as client:
        await submit_url(client, CLEAN_URL)
        limits = (await client.get("/v1/user")).json()["data"]["limits"]
    assert limits["parallels"] == {"total": 3, "available": 2}


async def test_limits_control_route(anyrun: httpx.AsyncClient) -> None:
    changed = await anyrun.post(
        "/_emulator/limits", json={"parallels": 0, "dailyQuota": 7}
    )
    submit = await anyrun.post(
        "/v1/analysis", json={"obj_type": "url", "obj_url": CLEAN_URL}
    )
    limits = (await anyrun.get("/v1/user")).json()["data"]["limits"]
    assert changed.status_code == 200
    assert submit.status_code == 429
    assert limits["api"]["day"] == 7
    assert limits["parallels"]["total"] == 0


async def test_limits_control_invalid(anyrun: httpx.AsyncClient) -> None:
    response = await anyrun.post("/_emulator/limits", json={"parallels": -2})
    assert response.status_code == 400


async def test_limits_reset_restores(anyrun: httpx.AsyncClient) -> None:
    await anyrun.post("/_emulator/limits", json={"parallels": 0})
    await anyrun.post("/_emulator/reset")
    limits = (await anyrun.get("/v1/user")).json()["data"]["limits"]
    state = (await anyrun.get("/_emulator/state")).json()
    assert limits["parallels"]["total"] == 5
    assert state["tasks"] == []
