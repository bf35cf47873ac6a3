"""Microsoft Sentinel clients: incidents through ARM and the TI upload API.

Incidents: GET and PUT `{incidentArmId}` (optimistic concurrency by etag; a
stale etag gets 409), PUT `{incidentArmId}/comments/{commentId}` (at most
30,000 characters). Threat intelligence: POST
`/workspaces/{workspaceId}/threat-intelligence-stix-objects:upload`, at most
100 objects per request, partial failures listed in a 200 answer.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from clients.credentials import BearerClient, TokenProvider

COMMENT_MAX_CHARS = 30_000
STIX_BATCH_MAX = 100


class SentinelClient(BearerClient):
    service = "Sentinel"

    def __init__(
        self, base_url: str, tokens: TokenProvider, *, api_version: str, **kwargs
    ):
        super().__init__(base_url, tokens, **kwargs)
        self.api_version = api_version

    def _params(self) -> dict[str, str]:
        return {"api-version": self.api_version}

    def get_incident(self, incident_id: str) -> dict[str, Any]:
        """Return the incident resource (id, name, etag, properties)."""
        response = self.call("get incident", "GET", incident_id, params=self._params())
        return response.json()

    def put_incident(
        self, incident_id: str, etag: str, properties: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace the incident's properties under `etag`; ConflictError if stale."""
        response = self.call(
            "update incident",
            "PUT",
            incident_id,
            params=self._params(),
            json={"etag": etag, "properties": properties},
        )
        return response.json()

    def put_comment(
        self, incident_id: str, comment_id: str, message: str
    ) -> dict[str, Any]:
        """Create or replace the comment `comment_id` (PUT is idempotent by id)."""
        if len(message) > COMMENT_MAX_CHARS:
            raise ValueError(
                f"comment is {len(message)} characters; Sentinel accepts at most "
                f"{COMMENT_MAX_CHARS}"
            )
        response = self.call(
            "add incident comment",
            "PUT",
            f"{incident_id}/comments/{quote(comment_id)}",
            params=self._params(),
            json={"properties": {"message": message}},
        )
        return response.json()


class ThreatIntelligenceClient(BearerClient):
    service = "Sentinel TI"

    def __init__(
        self, base_url: str, tokens: TokenProvider, *, api_version: str, **kwargs
    ):
        super().__init__(base_url, tokens, **kwargs)
        self.api_version = api_version

    def upload(
        self, workspace_id: str, source_system: str, objects: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Upload one batch of STIX objects; return the per-record errors."""
        if not 1 <= len(objects) <= STIX_BATCH_MAX:
            raise ValueError(
                f"a STIX upload takes 1 to {STIX_BATCH_MAX} objects, got {len(objects)}"
            )
        response = self.call(
            "upload STIX objects",
            "POST",
            f"/workspaces/{quote(workspace_id)}/threat-intelligence-stix-objects:upload",
            params={"api-version": self.api_version},
            json={"sourcesystem": source_system, "stixobjects": objects},
        )
        if not response.content:
            return []
        body = response.json()
        return list(body.get("errors") or []) if isinstance(body, dict) else []
