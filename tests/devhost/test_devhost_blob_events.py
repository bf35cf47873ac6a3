"""BlobCreated events for new blobs: event shape, delivery once, retries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from azure.durable_functions.models.utils import http_utils

from devhost import DevHostServer, WallClock
from devhost.blob_events import (
    MAX_ATTEMPTS,
    BlobEventBridge,
    BlobInfo,
    BlobRoute,
    blob_created_event,
)

pytestmark = pytest.mark.timeout(30)


class FakeContainers:
    def __init__(self) -> None:
        self.blobs: dict[str, list[BlobInfo]] = {}

    def put(self, container: str, name: str, size: int, etag: str = '"1"') -> None:
        url = f"http://127.0.0.1:10000/devstoreaccount1/{container}/{name}"
        blobs = [b for b in self.blobs.get(container, []) if b.name != name]
        blobs.append(BlobInfo(name, etag, size, "application/octet-stream", url))
        self.blobs[container] = blobs

    def __call__(self, container: str) -> list[BlobInfo]:
        return list(self.blobs.get(container, []))


class Recorder:
    def __init__(self, failures: int = 0) -> None:
        self.calls: list[tuple[str, list[dict]]] = []
        self.failures = failures

    async def __call__(self, function: str, events: list[dict]) -> int:
        self.calls.append((function, events))
        return self.failures


def bridge_for(containers, deliver, meta: dict | None = None) -> BlobEventBridge:
    meta = {} if meta is None else meta
    return BlobEventBridge(
        [BlobRoute("uploads", "on_upload")],
        containers,
        deliver,
        meta.get,
        meta.__setitem__,
    )


def test_route_parse():
    assert BlobRoute.parse("uploads=on_upload") == BlobRoute("uploads", "on_upload")


@pytest.mark.parametrize("text", ["uploads", "=f", "c=", ""])
def test_route_parse_invalid(text):
    with pytest.raises(ValueError, match="CONTAINER=FUNCTION"):
        BlobRoute.parse(text)


def test_event_shape():
    blob = BlobInfo("dir/a.bin", '"e"', 12, None, "http://127.0.0.1/x")
    event = blob_created_event("uploads", blob, datetime(2025, 1, 1, tzinfo=UTC))
    assert event["eventType"] == "Microsoft.Storage.BlobCreated"
    assert (
        event["subject"] == "/blobServices/default/containers/uploads/blobs/dir/a.bin"
    )
    assert event["data"]["contentLength"] == 12
    assert event["data"]["blobType"] == "BlockBlob"
    assert event["eventTime"] == "2025-01-01T00:00:00.000000Z"


async def test_new_blob_delivered_once():
    containers = FakeContainers()
    containers.put("uploads", "a.bin", 3)
    recorder = Recorder()
    bridge = bridge_for(containers, recorder)
    assert await bridge.poll(bridge.routes[0]) == 1
    assert await bridge.poll(bridge.routes[0]) == 0
    assert recorder.calls[0][0] == "on_upload"


async def test_seen_blobs_persisted():
    containers = FakeContainers()
    containers.put("uploads", "a.bin", 3)
    meta: dict = {}
    await bridge_for(containers, Recorder(), meta).poll(
        BlobRoute("uploads", "on_upload")
    )
    recorder = Recorder()
    restarted = bridge_for(containers, recorder, meta)
    assert await restarted.poll(restarted.routes[0]) == 0
    assert recorder.calls == []


async def test_rewritten_blob_delivered():
    containers = FakeContainers()
    containers.put("uploads", "a.bin", 3)
    recorder = Recorder()
    bridge = bridge_for(containers, recorder)
    await bridge.poll(bridge.routes[0])
    containers.put("uploads", "a.bin", 4, etag='"2"')
    assert await bridge.poll(bridge.routes[0]) == 1


async def test_failed_delivery_retried():
    containers = FakeContainers()
    containers.put("uploads", "a.bin", 3)
    recorder = Recorder(failures=1)
    bridge = bridge_for(containers, recorder)
    for _ in range(MAX_ATTEMPTS + 2):
        await bridge.poll(bridge.routes[0])
    assert len(recorder.calls) == MAX_ATTEMPTS


async def test_bridge_starts_orchestration(make_engine):
    engine = make_engine(clock=WallClock())
    server = DevHostServer(engine, function_key="k", host="127.0.0.1", port=0)
    await server.start()
    engine.run_in_background()
    try:
        containers = FakeContainers()
        containers.put("uploads", "blob-1", 3)
        bridge = bridge_for(containers, server.deliver_event_grid_to)
        assert await bridge.poll(bridge.routes[0]) == 1
        status = await asyncio.to_thread(engine.wait_for_status, "blob-1")
        assert status["output"] == 10
    finally:
        await server.stop()
        await http_utils._close_session()
