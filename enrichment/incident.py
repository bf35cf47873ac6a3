"""The Sentinel incident trigger body: validation and extraction of objects.

The "Microsoft Sentinel incident" playbook trigger delivers the incident ARM
resource under `object`, with camelCase entities in
`object.properties.relatedEntities`. Playbooks often forward it wrapped as
`{"Body": <trigger body>}`. Alert-trigger bodies (PascalCase `Entities`) are a
different contract and are rejected with a message saying so.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from enrichment.files import extract_files, file_identity
from enrichment.urls import normalise

MAX_ENTITIES = 10_000

_INCIDENT_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.OperationalInsights/"
    r"workspaces/[^/]+/providers/Microsoft\.SecurityInsights/Incidents/([A-Za-z0-9-]{1,64})$",
    re.IGNORECASE,
)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


class InvalidIncident(ValueError):
    """The trigger body is invalid; `field` is the JSON path of the bad value."""

    def __init__(self, field_path: str, problem: str, fix: str):
        self.field = field_path
        self.problem = problem
        self.fix = fix
        super().__init__(f"{field_path}: {problem}. {fix}")

    def to_json(self) -> dict[str, str]:
        return {"error": "invalid_incident", "field": self.field, "message": str(self)}


@dataclass
class Extraction:
    """The objects of one incident: those to analyse and those skipped, with reasons."""

    incident: dict[str, Any]
    objects: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def object_keys(self) -> list[str]:
        return sorted(item["key"] for item in self.objects)


def object_key(kind: str, value: str) -> str:
    """Return the stable key of an analysable object (kind plus value digest)."""
    digest = hashlib.sha256(f"{kind}\n{value}".encode()).hexdigest()[:16]
    return f"{kind}-{digest}"


def unwrap(body: Any) -> dict[str, Any]:
    """Return the trigger body, unwrapping `{"Body": ...}` as playbooks send it."""
    if not isinstance(body, dict):
        raise InvalidIncident(
            "$",
            f"expected a JSON object, got {type(body).__name__}",
            "Post the body of the Microsoft Sentinel incident trigger.",
        )
    if "object" not in body:
        for wrapper in ("Body", "body"):
            if isinstance(body.get(wrapper), dict):
                return body[wrapper]
    return body


def _require(container: dict[str, Any], key: str, kind: type, path: str, fix: str):
    value = container.get(key)
    if value is None:
        raise InvalidIncident(f"{path}.{key}" if path else key, "missing", fix)
    if not isinstance(value, kind):
        raise InvalidIncident(
            f"{path}.{key}" if path else key,
            f"expected {kind.__name__}, got {type(value).__name__}",
            fix,
        )
    return value


def _looks_like_alert_trigger(body: dict[str, Any]) -> bool:
    return any(key in body for key in ("Entities", "SystemAlertId", "AlertDisplayName"))


def parse_incident(body: Any) -> dict[str, Any]:
    """Validate the incident part of a trigger body and return its reference."""
    trigger = unwrap(body)
    schema = trigger.get("objectSchemaType")
    if "object" not in trigger and _looks_like_alert_trigger(trigger):
        raise InvalidIncident(
            "object",
            "missing; this is an alert-trigger body (PascalCase Entities)",
            "Use the Microsoft Sentinel incident trigger in the playbook.",
        )
    if schema is not None and schema != "Incident":
        raise InvalidIncident(
            "objectSchemaType",
            f"expected 'Incident', got {schema!r}",
            "Use the Microsoft Sentinel incident trigger in the playbook.",
        )
    fix_trigger = "Post the unmodified body of the Microsoft Sentinel incident trigger."
    incident = _require(trigger, "object", dict, "", fix_trigger)
    incident_id = _require(incident, "id", str, "object", fix_trigger)
    match = _INCIDENT_ID.match(incident_id)
    if not match:
        raise InvalidIncident(
            "object.id",
            "not a Microsoft.SecurityInsights incident resource id",
            "Pass the incident ARM id, /subscriptions/.../providers/"
            "Microsoft.SecurityInsights/Incidents/<name>.",
        )
    properties = _require(incident, "properties", dict, "object", fix_trigger)
    workspace_id = _require(trigger, "workspaceId", str, "", fix_trigger)
    if not _GUID.match(workspace_id):
        raise InvalidIncident(
            "workspaceId",
            "not a GUID",
            "Pass the Log Analytics workspace id (customerId) from the trigger.",
        )
    number = properties.get("incidentNumber")
    if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
        raise InvalidIncident(
            "object.properties.incidentNumber",
            f"expected an integer, got {number!r}",
            fix_trigger,
        )
    title = properties.get("title")
    if title is not None and not isinstance(title, str):
        raise InvalidIncident(
            "object.properties.title", "expected a string", fix_trigger
        )

    return {
        "id": incident_id,
        "name": match.group(1).lower(),
        "number": number,
        "title": (title or "")[:256],
        "workspace_id": workspace_id.lower(),
        "url": properties.get("incidentUrl")
        if isinstance(properties.get("incidentUrl"), str)
        else None,
    }


def _entities(trigger: dict[str, Any]) -> list[dict[str, Any]]:
    properties = trigger["object"]["properties"]
    entities = properties.get("relatedEntities")
    if entities is None:
        return []
    if not isinstance(entities, list):
        raise InvalidIncident(
            "object.properties.relatedEntities",
            f"expected a list, got {type(entities).__name__}",
            "Post the unmodified body of the Microsoft Sentinel incident trigger.",
        )
    if len(entities) > MAX_ENTITIES:
        raise InvalidIncident(
            "object.properties.relatedEntities",
            f"{len(entities)} entities; at most {MAX_ENTITIES} are accepted",
            "Split the incident or reduce its entity mappings.",
        )
    for index, entity in enumerate(entities):
        path = f"object.properties.relatedEntities[{index}]"
        if not isinstance(entity, dict):
            raise InvalidIncident(
                path, "expected an entity object", "Remove the malformed entity."
            )
        kind = entity.get("kind")
        if not isinstance(kind, str) or not kind:
            raise InvalidIncident(
                f"{path}.kind",
                "missing",
                "Each entity needs its kind (Url, File, Host, ...).",
            )
        if not isinstance(entity.get("properties", {}), dict):
            raise InvalidIncident(
                f"{path}.properties", "expected an object", "Fix the entity."
            )
    return entities


def _add(extraction: Extraction, item: dict[str, Any], max_objects: int) -> None:
    if len(extraction.objects) >= max_objects:
        extraction.skipped.append(
            {
                "kind": item["kind"],
                "object": item["object"],
                "reason": f"over the limit of {max_objects} objects per incident "
                "(MAX_OBJECTS_PER_INCIDENT)",
            }
        )
        return
    extraction.objects.append(item)


def defender_alerts(trigger: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the incident's Defender for Endpoint alerts (id, title, host)."""
    alerts = trigger["object"]["properties"].get("alerts") or []
    found = []
    for alert in alerts if isinstance(alerts, list) else []:
        properties = (
            (alert or {}).get("properties") if isinstance(alert, dict) else None
        )
        if not isinstance(properties, dict):
            continue
        product = str(properties.get("productName") or "")
        alert_id = properties.get("providerAlertId")
        if not isinstance(alert_id, str) or not alert_id:
            continue
        if (
            "Defender Advanced Threat Protection" not in product
            and "Endpoint" not in product
        ):
            continue
        found.append(
            {
                "id": alert_id,
                "title": str(properties.get("alertDisplayName") or "")[:200],
                "host": properties.get("compromisedEntity")
                if isinstance(properties.get("compromisedEntity"), str)
                else None,
            }
        )
    return found


def extract(body: Any, max_objects: int) -> Extraction:
    """Validate a trigger body and list its analysable URLs and files."""
    trigger = unwrap(body)
    incident = parse_incident(trigger)
    extraction = Extraction(incident=incident)
    seen: set[str] = set()
    entities = _entities(trigger)

    for index, entity in enumerate(entities):
        if entity["kind"] != "Url":
            continue
        path = f"object.properties.relatedEntities[{index}].properties.url"
        raw = (entity.get("properties") or {}).get("url")
        if not isinstance(raw, str):
            raise InvalidIncident(
                path, "missing or not a string", "Url entities need a url."
            )
        checked = normalise(raw)
        if not checked.analysable:
            extraction.skipped.append(
                {"kind": "url", "object": raw[:600], "reason": checked.reason}
            )
            continue
        if checked.url in seen:
            continue
        seen.add(checked.url)
        item = {
            "kind": "url",
            "key": object_key("url", checked.url),
            "object": checked.url,
        }
        _add(extraction, item, max_objects)

    files, skipped_files = extract_files(entities)
    extraction.skipped.extend(skipped_files)
    for item in files:
        key = object_key("file", file_identity(item))
        if key in seen:
            continue
        seen.add(key)
        _add(extraction, {**item, "key": key}, max_objects)
    extraction.alerts = defender_alerts(trigger)
    return extraction


def instance_id(incident: dict[str, Any], keys: list[str]) -> str:
    """Derive the orchestration id from the incident and its set of objects."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:12]
    return f"inc-{incident['name']}-{digest}"
