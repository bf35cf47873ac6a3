"""BlobCreated events for new blobs, in place of an Event Grid subscription.

Azurite has no Event Grid, so devhost polls the configured containers and
invokes the app's eventGridTrigger function with a
`Microsoft.Storage.BlobCreated` event (Event Grid schema) for each new blob,
as a subscription on the storage account would. A blob counts as new once per
name and ETag. The blobs already delivered are stored in the engine's data
folder, so a restart does not deliver them again. Delivery is at least once,
because a blob whose function failed is delivered again at the next poll, up
to `MAX_ATTEMPTS` times, like Event Grid's retries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

from .protocol import format_timestamp

log = logging.getLogger("devhost.blob_events")

MAX_ATTEMPTS = 5
SEEN_KEY_PREFIX = "blob_events.seen."


@dataclass(frozen=True)
class BlobRoute:
    """A container whose new blobs go to an eventGridTrigger function."""

    container: str
    function: str

    @classmethod
    def parse(cls, text: str) -> BlobRoute:
        """Parse CONTAINER=FUNCTION; raise ValueError for any other shape."""
        container, separator, function = text.partition("=")
        if not separator or not container.strip() or not function.strip():
            raise ValueError(f"--blob-events expects CONTAINER=FUNCTION, got {text!r}")
        return cls(container.strip(), function.strip())


@dataclass(frozen=True)
class BlobInfo:
    name: str
    etag: str
    size: int
    content_type: str | None
    url: str


class BlobLister(Protocol):
    def __call__(self, container: str) -> list[BlobInfo]: ...


def azure_blob_lister(connection_string: str) -> BlobLister:
    """Return a lister that reads containers with azure-storage-blob."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection_string)

    def list_container(container: str) -> list[BlobInfo]:
        client = service.get_container_client(container)
        try:
            blobs = list(client.list_blobs())
        except ResourceNotFoundError:
            return []
        return [
            BlobInfo(
                name=blob.name,
                etag=blob.etag,
                size=blob.size,
                content_type=blob.content_settings.content_type,
                url=f"{client.url}/{quote(blob.name)}",
            )
            for blob in blobs
        ]

    return list_container


def blob_created_event(container: str, blob: BlobInfo, now: datetime) -> dict:
    """Build the Event Grid event Azure Storage sends when a block blob is written."""
    return {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/devhost/resourceGroups/devhost/providers/"
        "Microsoft.Storage/storageAccounts/devhost",
        "subject": f"/blobServices/default/containers/{container}/blobs/{blob.name}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": format_timestamp(now),
        "dataVersion": "",
        "metadataVersion": "1",
        "data": {
            "api": "PutBlob",
            "clientRequestId": str(uuid.uuid4()),
            "requestId": str(uuid.uuid4()),
            "eTag": blob.etag,
            "contentType": blob.content_type or "application/octet-stream",
            "contentLength": blob.size,
            "blobType": "BlockBlob",
            "url": blob.url,
            "sequencer": f"{int(now.timestamp() * 1_000_000):032d}",
            "storageDiagnostics": {"batchId": str(uuid.uuid4())},
        },
    }


Deliver = Callable[[str, list[dict]], Any]


class BlobEventBridge:
    """Poll containers and deliver BlobCreated events for new blobs.

    `deliver(function_name, events)` is awaited and returns the number of
    events whose function invocation failed. `read_meta`/`write_meta` persist
    the delivered blobs.
    """

    def __init__(
        self,
        routes: Iterable[BlobRoute],
        lister: BlobLister,
        deliver: Deliver,
        read_meta: Callable[[str], str | None],
        write_meta: Callable[[str, str], None],
        *,
        interval: float = 0.5,
    ) -> None:
        self.routes = list(routes)
        self._lister = lister
        self._deliver = deliver
        self._read_meta = read_meta
        self._write_meta = write_meta
        self.interval = interval
        self._attempts: dict[tuple[str, str, str], int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set."""
        log.info(
            "blob_events.started routes=%s",
            ",".join(f"{r.container}={r.function}" for r in self.routes),
        )
        while not stop.is_set():
            for route in self.routes:
                try:
                    await self.poll(route)
                except Exception:
                    log.exception(
                        "blob_events.poll_failed container=%s", route.container
                    )
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass
        log.info("blob_events.stopped")

    async def poll(self, route: BlobRoute) -> int:
        """Deliver the route's new blobs; return how many functions succeeded.

        A blob whose function failed is tried again at the next poll, and given
        up after MAX_ATTEMPTS failures.
        """
        blobs = await asyncio.to_thread(self._lister, route.container)
        seen = self._load_seen(route.container)
        current = {f"{blob.name}|{blob.etag}": blob for blob in blobs}
        delivered = 0
        for key, blob in current.items():
            if key in seen:
                continue
            event = blob_created_event(route.container, blob, datetime.now(UTC))
            failures = await self._deliver(route.function, [event])
            attempt_key = (route.container, blob.name, blob.etag)
            attempts = self._attempts.get(attempt_key, 0) + 1
            if failures and attempts < MAX_ATTEMPTS:
                self._attempts[attempt_key] = attempts
                continue
            if failures:
                log.warning(
                    "blob_events.dropped container=%s blob=%s attempts=%d",
                    route.container,
                    blob.name,
                    attempts,
                )
            else:
                delivered += 1
            self._attempts.pop(attempt_key, None)
            seen.add(key)
        # Forget deleted blobs, so the stored set stays as small as the container.
        self._store_seen(route.container, seen & set(current))
        return delivered

    def _load_seen(self, container: str) -> set[str]:
        stored = self._read_meta(SEEN_KEY_PREFIX + container)
        return set(json.loads(stored)) if stored else set()

    def _store_seen(self, container: str, seen: set[str]) -> None:
        self._write_meta(SEEN_KEY_PREFIX + container, json.dumps(sorted(seen)))
