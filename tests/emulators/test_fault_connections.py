"""Faults on the connection: reset, reset_after, late and cut_stream."""

import asyncio
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from httpx_sse import aconnect_sse

from emulators import RunningEmulators
from tests.emulators.conftest import (
    API_KEY,
    ARM_VERSION,
    CLEAN_URL,
    INCIDENT_ID,
    StartEmulators,
    anyrun_client,
    submit_url,
    wait_until_finished,
)

pytestmark = pytest.mark.timeout(30)

URL_BODY = {"obj_type": "url", "obj_url": CLEAN_URL}
# What httpx raises when the server resets the connection.
RESET_ERRORS = (httpx.ReadError, httpx.RemoteProtocolError)


async def add_rule(client: httpx.AsyncClient, rule: dict[str, Any]) -> None:
    response = await client.post("/_emulator/faults", json=rule)
    assert response.status_code == 200, response.text


async def logged(client: httpx.AsyncClient) -> list[tuple[str, str, int]]:
    entries = (await client.get("/_emulator/requests")).json()["requests"]
    return [(entry["method"], entry["path"], entry["status"]) for entry in entries]


async def task_count(client: httpx.AsyncClient) -> int:
    return len((await client.get("/_emulator/state")).json()["tasks"])


async def read_monitor(
    client: httpx.AsyncClient, task_id: str
) -> tuple[int, list[dict[str, Any]], Exception | None]:
    """Read a monitor stream; return its status, the events and the transport error."""
    events: list[dict[str, Any]] = []
    async with aconnect_sse(
        client, "GET", f"/v1/analysis/monitor/{task_id}", timeout=5.0
    ) as source:
        status = source.response.status_code
        try:
            async for event in source.aiter_sse():
                events.append(event.json())
        except httpx.TransportError as exc:
            return status, events, exc
    return status, events, None


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{record.name}: {record.getMessage()}"
        for record in caplog.records
        if record.levelno >= logging.WARNING or record.exc_info
    ]


# reset


async def test_reset_before_handling(anyrun: httpx.AsyncClient) -> None:
    await add_rule(
        anyrun, {"kind": "reset", "path_prefix": "/v1/analysis", "method": "POST"}
    )
    with pytest.raises(RESET_ERRORS):
        await anyrun.post("/v1/analysis", json=URL_BODY)
    tasks_after_reset = await task_count(anyrun)
    retried = await anyrun.post("/v1/analysis", json=URL_BODY)
    assert tasks_after_reset == 0
    assert retried.status_code == 200
    assert await logged(anyrun) == [
        ("POST", "/v1/analysis", 0),
        ("POST", "/v1/analysis", 200),
    ]


async def test_reset_sends_rst(emulators: RunningEmulators) -> None:
    async with anyrun_client(emulators) as client:
        await add_rule(client, {"kind": "reset", "path_prefix": "/v1/user"})
    address = urlsplit(emulators.anyrun_url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    request = (
        f"GET /v1/user HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Authorization: API-Key {API_KEY}\r\n\r\n"
    )
    writer.write(request.encode())
    await writer.drain()
    try:
        # An orderly close (FIN) would end the read with b"" instead.
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), timeout=5.0)
    finally:
        writer.close()


async def test_reset_with_delay(anyrun: httpx.AsyncClient) -> None:
    await add_rule(
        anyrun, {"kind": "reset", "path_prefix": "/v1/user", "delay_seconds": 0.2}
    )
    began = time.monotonic()
    with pytest.raises(RESET_ERRORS):
        await anyrun.get("/v1/user")
    assert time.monotonic() - began >= 0.2


async def test_resets_log_no_errors(
    anyrun: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    task_id = await submit_url(anyrun, CLEAN_URL)
    for kind in ("reset", "reset_after", "cut_stream"):
        await add_rule(anyrun, {"kind": kind, "path_prefix": "/v1/user"})
        with pytest.raises(RESET_ERRORS):
            await anyrun.get("/v1/user")
    await add_rule(anyrun, {"kind": "cut_stream", "path_prefix": "/v1/analysis/"})
    _, _, error = await read_monitor(anyrun, task_id)
    await anyrun.get("/_emulator/requests")
    assert isinstance(error, RESET_ERRORS)
    assert problems(caplog) == []


# reset_after


async def test_reset_after_task_created(anyrun: httpx.AsyncClient) -> None:
    await add_rule(
        anyrun,
        {"kind": "reset_after", "path_prefix": "/v1/analysis", "method": "POST"},
    )
    with pytest.raises(RESET_ERRORS):
        await anyrun.post("/v1/analysis", json=URL_BODY)
    state = (await anyrun.get("/_emulator/state")).json()
    assert [task["obj"]["url"] for task in state["tasks"]] == [CLEAN_URL]
    assert await logged(anyrun) == [("POST", "/v1/analysis", 0)]


async def test_reset_after_comment_stored(sentinel: httpx.AsyncClient) -> None:
    comment_path = f"{INCIDENT_ID}/comments/fault-test"
    await add_rule(
        sentinel, {"kind": "reset_after", "path_prefix": INCIDENT_ID, "method": "PUT"}
    )
    with pytest.raises(RESET_ERRORS):
        await sentinel.put(
            comment_path,
            params=ARM_VERSION,
            json={"properties": {"message": "ANY.RUN verdict: clean"}},
        )
    stored = await sentinel.get(comment_path, params=ARM_VERSION)
    assert stored.status_code == 200
    assert stored.json()["properties"]["message"] == "ANY.RUN verdict: clean"


# late


async def test_late_client_gives_up(anyrun: httpx.AsyncClient) -> None:
    await add_rule(
        anyrun,
        {
            "kind": "late",
            "path_prefix": "/v1/analysis",
            "method": "POST",
            "delay_seconds": 2.0,
        },
    )
    with pytest.raises(httpx.ReadTimeout):
        await anyrun.post("/v1/analysis", json=URL_BODY, timeout=0.3)
    # The task was created before the client gave up.
    assert await task_count(anyrun) == 1


async def test_late_answer_arrives(anyrun: httpx.AsyncClient) -> None:
    await add_rule(
        anyrun, {"kind": "late", "path_prefix": "/v1/analysis", "delay_seconds": 0.3}
    )
    began = time.monotonic()
    response = await anyrun.post("/v1/analysis", json=URL_BODY)
    elapsed = time.monotonic() - began
    state = (await anyrun.get("/_emulator/state")).json()
    assert response.status_code == 200
    assert elapsed >= 0.3
    assert state["tasks"][0]["uuid"] == response.json()["data"]["taskid"]


async def test_late_error_held_too(anyrun: httpx.AsyncClient) -> None:
    await add_rule(
        anyrun, {"kind": "late", "path_prefix": "/v1/nothing", "delay_seconds": 0.2}
    )
    began = time.monotonic()
    response = await anyrun.get("/v1/nothing")
    assert response.status_code == 404
    assert response.json()["error"] is True
    assert time.monotonic() - began >= 0.2


# cut_stream


async def test_cut_stream_after_events(start: StartEmulators) -> None:
    # At speed 60 the analysis runs 2 wall seconds, far longer than two events.
    running = await start(speed=60.0)
    async with anyrun_client(running) as client:
        task_id = await submit_url(client, CLEAN_URL)
        await add_rule(
            client, {"kind": "cut_stream", "path_prefix": "/v1/analysis/", "events": 2}
        )
        status, events, error = await read_monitor(client, task_id)
        entries = await logged(client)
    assert status == 200
    assert len(events) == 2
    assert all(event["completed"] is False for event in events)
    assert isinstance(error, RESET_ERRORS)
    assert entries == [
        ("POST", "/v1/analysis", 200),
        ("GET", f"/v1/analysis/monitor/{task_id}", 0),
    ]


async def test_cut_stream_no_events(anyrun: httpx.AsyncClient) -> None:
    task_id = await submit_url(anyrun, CLEAN_URL)
    await add_rule(
        anyrun, {"kind": "cut_stream", "path_prefix": "/v1/analysis/", "events": 0}
    )
    status, events, error = await read_monitor(anyrun, task_id)
    assert status == 200
    assert events == []
    assert isinstance(error, RESET_ERRORS)


async def test_cut_stream_task_ends_first(start: StartEmulators) -> None:
    running = await start()
    async with anyrun_client(running) as client:
        task_id = await submit_url(client, CLEAN_URL, opt_timeout=10)
        await wait_until_finished(client, task_id)
        await add_rule(
            client, {"kind": "cut_stream", "path_prefix": "/v1/analysis/", "events": 5}
        )
        status, events, error = await read_monitor(client, task_id)
    assert status == 200
    assert len(events) == 1
    assert events[0]["completed"] is True
    assert isinstance(error, RESET_ERRORS)


async def test_cut_stream_other_route(anyrun: httpx.AsyncClient) -> None:
    await add_rule(
        anyrun, {"kind": "cut_stream", "path_prefix": "/v1/analysis", "method": "POST"}
    )
    with pytest.raises(RESET_ERRORS):
        await anyrun.post("/v1/analysis", json=URL_BODY)
    assert await task_count(anyrun) == 1
    assert await logged(anyrun) == [("POST", "/v1/analysis", 0)]
