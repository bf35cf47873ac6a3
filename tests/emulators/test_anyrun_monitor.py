"""GET /v1/analysis/monitor/{uuid}: the status event stream over emulated time."""

import asyncio
import time

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.emulators.conftest import (
    BROKEN_URL,
    CLEAN_URL,
    PHISHING_URL,
    StartEmulators,
    anyrun_client,
    submit_url,
    wait_until_finished,
)

pytestmark = pytest.mark.timeout(30)


async def read_events(client: httpx.AsyncClient, task_id: str) -> list[dict]:
    async with aconnect_sse(
        client, "GET", f"/v1/analysis/monitor/{task_id}", timeout=10.0
    ) as events:
        assert events.response.headers["content-type"].startswith("text/event-stream")
        return [event.json() async for event in events.aiter_sse()]


async def test_monitor_progress(start: StartEmulators) -> None:
    # At speed 200 the verdict appears 0.3 s after submission, well after the
    # first event.
    running = await start(speed=200.0)
    async with anyrun_client(running) as client:
        task_id = await submit_url(client, PHISHING_URL)
        events = await read_events(client, task_id)
    statuses = [event["task"]["status"] for event in events]
    remaining = [int(event["task"]["remaining"]) for event in events]
    running = events[:-1]
    assert len(events) >= 6
    assert all(50 <= status <= 99 for status in statuses[:-1])
    assert statuses == sorted(statuses)
    assert remaining == sorted(remaining, reverse=True)
    assert all(isinstance(event["task"]["remaining"], str) for event in events)
    assert all(event["completed"] is False for event in running)
    assert all(event["error"] is False for event in events)
    assert "scores" not in events[0]["task"]
    assert events[-1]["task"]["status"] == 100
    assert events[-1]["task"]["remaining"] == "0"
    assert events[-1]["completed"] is True


async def test_monitor_final_verdict(anyrun: httpx.AsyncClient) -> None:
    task_id = await submit_url(anyrun, PHISHING_URL)
    last = await wait_until_finished(anyrun, task_id)
    assert last["task"]["scores"]["verdict"] == {
        "threat_level": 2,
        "text": "Malicious activity",
    }


async def test_monitor_clean_verdict(anyrun: httpx.AsyncClient) -> None:
    task_id = await submit_url(anyrun, CLEAN_URL)
    last = await wait_until_finished(anyrun, task_id)
    assert last["task"]["scores"]["verdict"] == {
        "threat_level": 0,
        "text": "No threats detected",
    }


async def test_monitor_speed_factor(start: StartEmulators) -> None:
    # At speed 120 a 120-second analysis ends after about one wall second.
    running = await start(speed=120.0)
    async with anyrun_client(running) as client:
        began = time.monotonic()
        task_id = await submit_url(client, CLEAN_URL, opt_timeout=120)
        events = await read_events(client, task_id)
        elapsed = time.monotonic() - began
    assert events[-1]["completed"] is True
    assert 0.9 <= elapsed <= 2.0
    # Events come at least every 0.5 s of wall time, so at least two before the end.
    assert len(events) >= 3


async def test_monitor_slow_interval(start: StartEmulators) -> None:
    # At speed 1 events still come every 0.5 s of wall time.
    running = await start(speed=1.0)
    async with anyrun_client(running) as client:
        task_id = await submit_url(client, CLEAN_URL, opt_timeout=60)
        received = []
        began = time.monotonic()
        async with aconnect_sse(
            client, "GET", f"/v1/analysis/monitor/{task_id}"
        ) as events:
            async for event in events.aiter_sse():
                received.append(event.json())
                if len(received) == 3:
                    break
        elapsed = time.monotonic() - began
    assert 0.9 <= elapsed <= 1.6
    assert int(received[-1]["task"]["remaining"]) >= 58


async def test_monitor_client_closes_early(anyrun: httpx.AsyncClient) -> None:
    task_id = await submit_url(anyrun, CLEAN_URL)
    async with aconnect_sse(anyrun, "GET", f"/v1/analysis/monitor/{task_id}") as events:
        async for event in events.aiter_sse():
            first = event.json()
            break
    await asyncio.sleep(0.1)
    after = await anyrun.get("/v1/user")
    log = (await anyrun.get("/_emulator/requests")).json()["requests"]
    monitor_entries = [entry for entry in log if "/monitor/" in entry["path"]]
    assert first["task"]["status"] >= 50
    assert after.status_code == 200
    assert [entry["status"] for entry in monitor_entries] == [200]


async def test_monitor_after_completion(anyrun: httpx.AsyncClient) -> None:
    task_id = await submit_url(anyrun, CLEAN_URL, opt_timeout=10)
    await asyncio.sleep(0.1)
    events = await read_events(anyrun, task_id)
    assert len(events) == 1
    assert events[0]["completed"] is True


async def test_monitor_unknown_task(anyrun: httpx.AsyncClient) -> None:
    response = await anyrun.get(
        "/v1/analysis/monitor/0ec0a4cc-72a4-41b9-8a13-9f283b3b4e15"
    )
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] is True


async def test_monitor_failed_task(anyrun: httpx.AsyncClient) -> None:
    task_id = await submit_url(anyrun, BROKEN_URL)
    events = await read_events(anyrun, task_id)
    last = events[-1]
    assert last["task"]["status"] == -1
    assert last["error"] is True
    assert last["completed"] is False
    assert all(event["error"] is False for event in events[:-1])
    assert "scores" not in last["task"]


async def test_monitor_failed_report(anyrun: httpx.AsyncClient) -> None:
    task_id = await submit_url(anyrun, BROKEN_URL)
    await wait_until_finished(anyrun, task_id)
    report = await anyrun.get(f"/v1/analysis/{task_id}")
    iocs = await anyrun.get(f"/report/{task_id}/ioc/json")
    state = (await anyrun.get("/_emulator/state")).json()
    assert report.status_code == 422
    assert report.json() == {"error": True, "message": "No content"}
    assert iocs.status_code == 422
    assert state["tasks"][0]["status"] == -1
    assert state["tasks"][0]["verdict"] is None


async def test_monitor_stops_on_shutdown(start: StartEmulators) -> None:
    running = await start(speed=1.0)
    async with anyrun_client(running) as client:
        task_id = await submit_url(client, CLEAN_URL)
        stream = asyncio.create_task(read_events(client, task_id))
        await asyncio.sleep(0.2)
        began = time.monotonic()
        await running.stop()
        events = await asyncio.wait_for(stream, timeout=5.0)
        elapsed = time.monotonic() - began
    # The stream ends early and cleanly, with the task still running.
    assert elapsed < 3.0
    assert events[-1]["completed"] is False
