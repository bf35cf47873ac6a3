"""The upload container: per-blob SAS URLs, streamed reads and deletes.

SAS URLs are per blob, allow create and write only, and expire with the
upload deadline. In Azure they are signed with a user delegation key of the
app's managed identity. An account key is accepted only for a loopback
Azurite endpoint, which `settings.load` checks. Create alone is not enough:
Put Block, which the upload scripts use for files over 4 MiB, needs write.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

from clients.redaction import register_secret

# Azurite 3.37 accepts service versions up to this one; newer SDK defaults fail.
AZURITE_API_VERSION = "2025-11-05"
READ_CHUNK_BYTES = 4 * 1024 * 1024


class UploadStore:
    def __init__(
        self, endpoint: str, container: str, *, credential, account_key: str = ""
    ):
        self.endpoint = endpoint.rstrip("/")
        self.container = container
        self._account_key = account_key
        if account_key:
            register_secret(account_key)
            account = urlsplit(self.endpoint).path.strip("/").split("/")[0]
            self._account = account
            self._service = BlobServiceClient(
                self.endpoint,
                credential={"account_name": account, "account_key": account_key},
                api_version=AZURITE_API_VERSION,
                max_single_get_size=READ_CHUNK_BYTES,
                max_chunk_get_size=READ_CHUNK_BYTES,
            )
        else:
            self._service = BlobServiceClient(
                self.endpoint,
                credential=credential,
                max_single_get_size=READ_CHUNK_BYTES,
                max_chunk_get_size=READ_CHUNK_BYTES,
            )
            self._account = self._service.account_name
        self._delegation_key = None
        self._delegation_expiry = datetime.min.replace(tzinfo=UTC)
        self._lock = threading.Lock()
        self._container_ready = False

    def _container_client(self):
        client = self._service.get_container_client(self.container)
        if self._account_key and not self._container_ready:
            # Azurite starts empty; in Azure the template creates the container.
            if not client.exists():
                client.create_container()
            self._container_ready = True
        return client

    def _user_delegation_key(self, expiry: datetime):
        with self._lock:
            if self._delegation_key is None or self._delegation_expiry < expiry:
                start = datetime.now(UTC) - timedelta(minutes=5)
                key_expiry = max(expiry, start + timedelta(hours=1))
                self._delegation_key = self._service.get_user_delegation_key(
                    start, key_expiry
                )
                self._delegation_expiry = key_expiry
            return self._delegation_key

    def upload_url(self, blob_name: str, expires_at: datetime) -> str:
        """Return a create-and-write SAS URL for one blob, valid until `expires_at`."""
        self._container_client()
        permission = BlobSasPermissions(create=True, write=True)
        common = {
            "account_name": self._account,
            "container_name": self.container,
            "blob_name": blob_name,
            "permission": permission,
            "expiry": expires_at,
            "start": datetime.now(UTC) - timedelta(minutes=5),
        }
        if self._account_key:
            token = generate_blob_sas(account_key=self._account_key, **common)
        else:
            token = generate_blob_sas(
                user_delegation_key=self._user_delegation_key(expires_at),
                protocol="https",
                **common,
            )
        blob = self._service.get_blob_client(self.container, blob_name)
        return f"{blob.url}?{token}"

    def exists(self, blob_name: str) -> bool:
        return self._container_client().get_blob_client(blob_name).exists()

    def size(self, blob_name: str) -> int:
        return (
            self._container_client()
            .get_blob_client(blob_name)
            .get_blob_properties()
            .size
        )

    def chunks(self, blob_name: str) -> Iterator[bytes]:
        """Stream a blob in chunks of at most 4 MiB."""
        downloader = self._container_client().get_blob_client(blob_name).download_blob()
        yield from downloader.chunks()

    def delete(self, blob_name: str) -> bool:
        try:
            self._container_client().get_blob_client(blob_name).delete_blob()
        except ResourceNotFoundError:
            return False
        return True

    def list_names(self) -> list[str]:
        return [item.name for item in self._container_client().list_blobs()]
