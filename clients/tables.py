"""The analysis table: conditional writes to Azure Table storage (azure-data-tables).

It keeps the records that let incidents reuse one analysis and the sandbox
slots (activities/records.py). Every write that two workers could race on is
conditional: an insert fails when the row exists and a replace or delete
fails when the row's etag changed, and both return False instead of raising.

In Azure the table is reached with the app's managed identity; an account key
is accepted only for a loopback Azurite endpoint (checked by `settings.load`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from clients.redaction import register_secret

log = logging.getLogger("connector.tables")

Entity = dict[str, Any]


class AnalysisTable:
    """One table of the storage account, with conflict-aware writes."""

    def __init__(
        self, endpoint: str, table_name: str, *, credential, account_key: str = ""
    ):
        self.endpoint = endpoint.rstrip("/")
        self.table_name = table_name
        if account_key:
            register_secret(account_key)
            # Azurite's path-style endpoint: http://127.0.0.1:PORT/<account>
            account = urlsplit(self.endpoint).path.strip("/").split("/")[0]
            credential = AzureNamedKeyCredential(account, account_key)
        self._client = TableClient(self.endpoint, table_name, credential=credential)
        self._ready = False
        self._lock = threading.Lock()

    def _table(self) -> TableClient:
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self._create_if_missing()
                    self._ready = True
        return self._client

    def _create_if_missing(self) -> None:
        try:
            self._client.create_table()
            log.info("table.created table=%s", self.table_name)
        except ResourceExistsError:
            pass
        except HttpResponseError as exc:
            # The template creates the table; an identity that may not create
            # tables still reads and writes rows.
            log.warning(
                "table.create_failed table=%s status=%s",
                self.table_name,
                exc.status_code,
            )

    def get(self, partition: str, row: str) -> Entity | None:
        """Return the row with its etag under the key "etag", or None."""
        try:
            entity = self._table().get_entity(partition, row)
        except ResourceNotFoundError:
            return None
        return _plain(entity)

    def rows(self, partition: str) -> list[Entity]:
        """Return every row of a partition, each with its etag."""
        query = self._table().query_entities(
            "PartitionKey eq @partition", parameters={"partition": partition}
        )
        return [_plain(entity) for entity in query]

    def insert(self, entity: Entity) -> str | None:
        """Insert a row and return its etag; None when a row with its key exists."""
        try:
            metadata = self._table().create_entity(_without_etag(entity))
        except ResourceExistsError:
            return None
        return metadata["etag"]

    def replace(self, entity: Entity, etag: str) -> str | None:
        """Replace a row if its etag is still `etag`; return the new etag or None."""
        try:
            metadata = self._table().update_entity(
                _without_etag(entity),
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        return metadata["etag"]

    def delete(self, partition: str, row: str, etag: str) -> bool:
        """Delete a row only if its etag is still `etag`; return False otherwise."""
        try:
            self._table().delete_entity(
                partition,
                row,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    def close(self) -> None:
        self._client.close()


def _plain(entity) -> Entity:
    row = dict(entity)
    row["etag"] = entity.metadata["etag"]
    return row


def _without_etag(entity: Entity) -> Entity:
    return {key: value for key, value in entity.items() if key != "etag"}
