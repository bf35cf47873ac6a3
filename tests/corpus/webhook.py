"""Run the real `post_incident` function in this process, without a host.

Only the Durable client is replaced: `RecordingClient` stores each start_new
call. The property under test is about the webhook's own code, which decides
whether to call start_new at all.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

import function_app

WEBHOOK_URL = "http://127.0.0.1/api/incidents"

# The registered function wraps the code in a middleware that builds a
# DurableOrchestrationClient from the binding string. __wrapped__ is the
# function as written, which takes the client as given.
_POST_INCIDENT = function_app.post_incident.build().get_user_function().__wrapped__


class RecordingClient:
    """A Durable client that has no instances and records every start."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str | None, Any]] = []

    async def get_status(self, instance_id: str, show_input: bool = False) -> None:
        return None

    async def start_new(
        self,
        orchestration_function_name: str,
        instance_id: str | None = None,
        client_input: Any = None,
    ) -> str | None:
        self.started.append((orchestration_function_name, instance_id, client_input))
        return instance_id

    def get_client_response_links(
        self, request: func.HttpRequest, instance_id: str
    ) -> dict[str, str]:
        base = "http://127.0.0.1/runtime/webhooks/durabletask/instances"
        return {"id": instance_id, "statusQueryGetUri": f"{base}/{instance_id}"}


@dataclass
class WebhookResult:
    """The status, decoded JSON body and recorded starts of one call."""

    status: int
    body: Any
    started: list[tuple[str, str | None, Any]] = field(default_factory=list)


def post(payload: bytes, content_type: str | None) -> WebhookResult:
    """Call post_incident with one request body and return what it did."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    request = func.HttpRequest(
        method="POST", url=WEBHOOK_URL, headers=headers, params={}, body=payload
    )
    client = RecordingClient()
    response = asyncio.run(_POST_INCIDENT(request, client))
    body = json.loads(response.get_body()) if response.get_body() else None
    return WebhookResult(response.status_code, body, client.started)
