"""The partial fault of the Sentinel TI upload: some valid records fail, unstored."""

from typing import Any

import httpx
import pytest

from tests.emulators.conftest import WORKSPACE_ID
from tests.emulators.test_sentinel_ti import indicator, stored_indicators, upload

pytestmark = pytest.mark.timeout(30)

PARTIAL_MESSAGE = "Internal error while saving the object; retry the upload"


async def add_partial(client: httpx.AsyncClient, **fields: Any) -> None:
    rule = {"kind": "partial", "path_prefix": "/workspaces/", **fields}
    response = await client.post("/_emulator/faults", json=rule)
    assert response.status_code == 200, response.text


def addresses(count: int) -> list[dict[str, Any]]:
    return [indicator(f"198.51.100.{index + 1}") for index in range(count)]


async def failed_indexes(client: httpx.AsyncClient, objects: list[Any]) -> list[int]:
    response = await upload(client, objects)
    assert response.status_code == 200, response.text
    return [error["recordIndex"] for error in response.json()["errors"]]


async def test_partial_fails_half(sentinel: httpx.AsyncClient) -> None:
    objects = addresses(4)
    await add_partial(sentinel, seed=3)
    response = await upload(sentinel, objects)
    errors = response.json()["errors"]
    stored = await stored_indicators(sentinel)
    failed_ids = {objects[error["recordIndex"]]["id"] for error in errors}
    assert response.status_code == 200
    assert len(errors) == 2
    assert all(error["errorMessages"] == [PARTIAL_MESSAGE] for error in errors)
    assert set(stored) == {obj["id"] for obj in objects} - failed_ids


async def test_partial_seed_repeats(sentinel: httpx.AsyncClient) -> None:
    objects = addresses(10)
    await add_partial(sentinel, seed=42, fail_ratio=0.3)
    first = await failed_indexes(sentinel, objects)
    await sentinel.post("/_emulator/reset")
    await add_partial(sentinel, seed=42, fail_ratio=0.3)
    second = await failed_indexes(sentinel, objects)
    assert len(first) == 3
    assert second == first
    assert first == sorted(first)


async def test_partial_at_least_one(sentinel: httpx.AsyncClient) -> None:
    await add_partial(sentinel, fail_ratio=0.01)
    failed = await failed_indexes(sentinel, addresses(3))
    assert len(failed) == 1
    assert len(await stored_indicators(sentinel)) == 2


async def test_partial_all_records(sentinel: httpx.AsyncClient) -> None:
    await add_partial(sentinel, fail_ratio=1)
    failed = await failed_indexes(sentinel, addresses(3))
    assert failed == [0, 1, 2]
    assert await stored_indicators(sentinel) == {}


async def test_partial_with_invalid_record(sentinel: httpx.AsyncClient) -> None:
    objects = [indicator("198.51.100.1"), indicator("bad", id=None)]
    objects.append(indicator("198.51.100.3"))
    await add_partial(sentinel, fail_ratio=0.5)
    response = await upload(sentinel, objects)
    errors = {error["recordIndex"]: error for error in response.json()["errors"]}
    partial = [
        index
        for index, error in errors.items()
        if error["errorMessages"] == [PARTIAL_MESSAGE]
    ]
    stored = await stored_indicators(sentinel)
    assert 1 in errors
    assert errors[1]["errorMessages"] != [PARTIAL_MESSAGE]
    # Only valid records are picked: one of the two.
    assert len(partial) == 1
    assert partial[0] in (0, 2)
    assert len(stored) == 1


async def test_partial_times_and_stats(sentinel: httpx.AsyncClient) -> None:
    await add_partial(sentinel, fail_ratio=1)
    first = await failed_indexes(sentinel, addresses(2))
    second = await upload(sentinel, addresses(2))
    stats = (await sentinel.get("/_emulator/faults/stats")).json()["injected"]
    state = (await sentinel.get("/_emulator/state")).json()
    assert first == [0, 1]
    assert second.status_code == 200
    assert second.content == b""
    assert stats["partial"] == 1
    assert len(state["indicators"][WORKSPACE_ID]) == 2
