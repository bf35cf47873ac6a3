"""Runtime statuses and the status JSON of the Durable HTTP API."""

from __future__ import annotations

import json
from typing import Any

from . import protocol
from .store import Instance

PENDING = "Pending"
RUNNING = "Running"
COMPLETED = "Completed"
FAILED = "Failed"
TERMINATED = "Terminated"
SUSPENDED = "Suspended"
CANCELED = "Canceled"
CONTINUED_AS_NEW = "ContinuedAsNew"
TERMINAL_STATUSES = frozenset({COMPLETED, FAILED, TERMINATED, CANCELED})
ALL_STATUSES = (
    RUNNING,
    COMPLETED,
    CONTINUED_AS_NEW,
    FAILED,
    CANCELED,
    TERMINATED,
    PENDING,
    SUSPENDED,
)


def status_json(instance: Instance, *, show_input: bool) -> dict:
    created = protocol.parse_timestamp(instance.created_time)
    updated = protocol.parse_timestamp(instance.last_updated_time)
    return {
        "name": instance.name,
        "instanceId": instance.instance_id,
        "runtimeStatus": instance.status,
        "input": decode_json_text(instance.input) if show_input else None,
        "customStatus": decode_json_text(instance.custom_status),
        "output": decode_json_text(instance.output),
        "createdTime": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lastUpdatedTime": updated.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def decode_json_text(text: str | None) -> Any:
    """Decode stored JSON text for the API; text that is not JSON is returned as is."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
