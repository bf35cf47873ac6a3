"""The Sentinel incident trigger body: validation and extraction of objects.

The "Microsoft Sentinel incident" playbook trigger delivers the incident ARM
resource under `object`, with camelCase entities in
`object.properties.relatedEntities`. Playbooks often forward it wrapped as
`{"Body": <trigger body>}`. Alert-trigger bodies (PascalCase `Entities`) are a
different contract and are rejected with a message saying so.

A body the connector cannot read raises InvalidIncident, which names the JSON
path of the bad value as posted and what to send instead. A URL or file that
cannot be analysed does not reject the body: it is reported as skipped, with
the reason. Entity kinds are compared case-insensitively.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from enrichment.files import entity_kind, extract_files, file_identity
from enrichment.urls import normalise, shown

MAX_ENTITIES = 10_000
# Any non-negative incident number up to the 64-bit maximum is accepted.
MAX_INCIDENT_NUMBER = 2**63 - 1
MAX_TITLE_CHARS = 256
MAX_INCIDENT_URL_CHARS = 2048
# How much of a skipped URL the report repeats.
SHOWN_URL_CHARS = 600
WRAPPER_KEYS = ("Body", "body")

_INCIDENT_ID = re.compile(
    r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.OperationalInsights/"
    r"workspaces/[^/]+/providers/Microsoft\.SecurityInsights/Incidents/([A-Za-z0-9-]{1,64})",
    re.IGNORECASE,
)
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
# Defender alert ids look like da637472900382838869_1364969609. The id becomes a
# URL path segment of the Defender API, so nothing else is accepted.
_ALERT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")

_SEND_TRIGGER = (
    "Send the body of the Microsoft Sentinel incident trigger, or "
    '{"Body": <that body>}.'
)
_USE_INCIDENT_TRIGGER = (
    "Use the Microsoft Sentinel incident trigger in the playbook; alert-trigger "
    "bodies are not accepted."
)


class InvalidIncident(ValueError):
    """The trigger body is invalid; `field` is the JSON path of the bad value."""

    def __init__(self, field_path: str, problem: str, fix: str):
        self.field = field_path
        self.problem = problem
        self.fix = fix
        super().__init__(f"{field_path}: {problem}. {fix}")

    def to_json(self) -> dict[str, str]:
        return {"error": "invalid_incident", "field": self.field, "message": str(self)}

    def under(self, prefix: str) -> InvalidIncident:
        """Return the same error with its path inside the wrapper key `prefix`."""
        path = prefix if self.field == "$" else f"{prefix}.{self.field}"
        return InvalidIncident(path, self.problem, self.fix)


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


def json_type(value: Any) -> str:
    """Return the JSON name of a decoded value's type: object, array, string..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _describe(value: Any) -> str:
    """Describe a value for an error message in a few words, whatever its size."""
    if isinstance(value, str):
        if len(value) > 60:
            return f"a string of {len(value)} characters"
        return f"the string {shown(value, 60)!r}"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        text = repr(value)
        return f"the number {text}" if len(text) <= 40 else "a number"
    if isinstance(value, dict | list):
        return f"an {json_type(value)}"
    return json_type(value)


def _unwrapped(body: Any) -> tuple[dict[str, Any], str | None]:
    """Return the trigger body and the wrapper key it came in, if any."""
    if not isinstance(body, dict):
        raise InvalidIncident(
            "$", f"expected a JSON object, got {_describe(body)}", _SEND_TRIGGER
        )
    if "object" in body:
        return body, None
    for key in WRAPPER_KEYS:
        if key not in body:
            continue
        inner = body[key]
        if not isinstance(inner, dict):
            raise InvalidIncident(
                key,
                f"expected the trigger body as a JSON object, got {_describe(inner)}",
                f'Send {{"{key}": <trigger body>}} with the body itself as the value, '
                "not a string or array made from it.",
            )
        twice = [inner_key for inner_key in WRAPPER_KEYS if inner_key in inner]
        if "object" not in inner and twice:
            raise InvalidIncident(
                f"{key}.{twice[0]}",
                "the trigger body is wrapped twice",
                f'Send {{"{key}": <trigger body>}} with one wrapper, or the trigger '
                "body alone.",
            )
        return inner, key
    return body, None


def unwrap(body: Any) -> dict[str, Any]:
    """Return the trigger body, unwrapping `{"Body": ...}` as playbooks send it."""
    return _unwrapped(body)[0]


def _path(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _require(container: dict[str, Any], key: str, kind: type, path: str, fix: str):
    if key not in container:
        raise InvalidIncident(_path(path, key), "missing", fix)
    value = container[key]
    if not isinstance(value, kind):
        expected = "an object" if kind is dict else "a string"
        raise InvalidIncident(
            _path(path, key), f"expected {expected}, got {_describe(value)}", fix
        )
    return value


def _looks_like_alert_trigger(body: dict[str, Any]) -> bool:
    return any(key in body for key in ("Entities", "SystemAlertId", "AlertDisplayName"))


def parse_incident(body: Any) -> dict[str, Any]:
    """Validate the incident part of a trigger body and return its reference."""
    trigger, wrapper = _unwrapped(body)
    try:
        return _parse_incident(trigger)
    except InvalidIncident as exc:
        if wrapper is None:
            raise
        raise exc.under(wrapper) from None


def _parse_incident(trigger: dict[str, Any]) -> dict[str, Any]:
    schema = trigger.get("objectSchemaType")
    if "object" not in trigger and _looks_like_alert_trigger(trigger):
        raise InvalidIncident(
            "object",
            "missing; this is an alert-trigger body (PascalCase Entities)",
            _USE_INCIDENT_TRIGGER,
        )
    if schema is not None and schema != "Incident":
        raise InvalidIncident(
            "objectSchemaType",
            f"expected 'Incident', got {_describe(schema)}",
            _USE_INCIDENT_TRIGGER,
        )
    incident = _require(
        trigger,
        "object",
        dict,
        "",
        "Send the trigger body unchanged: its object field is the incident resource.",
    )
    incident_id = _require(
        incident,
        "id",
        str,
        "object",
        "Send the incident's ARM id as a string, as the trigger delivers it.",
    )
    match = _INCIDENT_ID.fullmatch(incident_id)
    if not match:
        raise InvalidIncident(
            "object.id",
            "not a Microsoft.SecurityInsights incident resource id",
            "Send the incident ARM id, /subscriptions/<subscription>/resourceGroups/"
            "<group>/providers/Microsoft.OperationalInsights/workspaces/<workspace>/"
            "providers/Microsoft.SecurityInsights/Incidents/<name>, where <name> "
            "is 1 to 64 letters, digits or hyphens.",
        )
    properties = _require(
        incident,
        "properties",
        dict,
        "object",
        "Send the incident's properties object as the trigger delivers it.",
    )
    workspace_id = _require(
        trigger,
        "workspaceId",
        str,
        "",
        "Send the Log Analytics workspace id (a GUID) as the trigger delivers it.",
    )
    if not _GUID.fullmatch(workspace_id):
        raise InvalidIncident(
            "workspaceId",
            f"expected a GUID, got {_describe(workspace_id)}",
            "Send the Log Analytics workspace id (customerId, a GUID) from the "
            "trigger.",
        )
    number = properties.get("incidentNumber")
    if number is not None and (
        not isinstance(number, int)
        or isinstance(number, bool)
        or not 0 <= number <= MAX_INCIDENT_NUMBER
    ):
        raise InvalidIncident(
            "object.properties.incidentNumber",
            f"expected a non-negative integer, got {_describe(number)}",
            "Send the incident number as a JSON integer, or leave it out.",
        )
    title = properties.get("title")
    if title is not None and not isinstance(title, str):
        raise InvalidIncident(
            "object.properties.title",
            f"expected a string, got {_describe(title)}",
            "Send the incident title as a string, or leave it out.",
        )
    url = properties.get("incidentUrl")
    if not isinstance(url, str) or len(url) > MAX_INCIDENT_URL_CHARS:
        # The link is only shown to people, so an unusable one is left out.
        url = None

    return {
        "id": incident_id,
        "name": match.group(1).lower(),
        "number": number,
        "title": shown(title or "", MAX_TITLE_CHARS),
        "workspace_id": workspace_id.lower(),
        "url": shown(url, MAX_INCIDENT_URL_CHARS) if url else None,
    }


def _entities(trigger: dict[str, Any]) -> list[dict[str, Any]]:
    properties = trigger["object"]["properties"]
    entities = properties.get("relatedEntities")
    if entities is None:
        return []
    if not isinstance(entities, list):
        raise InvalidIncident(
            "object.properties.relatedEntities",
            f"expected an array, got {_describe(entities)}",
            "Send the incident's entities as an array, or leave the field out when "
            "there are none.",
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
                path,
                f"expected an entity object, got {_describe(entity)}",
                "Send each entity as an object with kind and properties, or remove it.",
            )
        kind = entity.get("kind")
        if not isinstance(kind, str) or not kind.strip():
            raise InvalidIncident(
                f"{path}.kind",
                "missing"
                if kind is None
                else f"expected a non-empty string, got {_describe(kind)}",
                "Set kind to the entity kind: Url, File, FileHash, Host, ...",
            )
        entity_properties = entity.get("properties", {})
        if not isinstance(entity_properties, dict):
            raise InvalidIncident(
                f"{path}.properties",
                f"expected an object, got {_describe(entity_properties)}",
                "Send the entity's properties as a JSON object, as the trigger "
                "delivers them.",
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
    """Return the incident's Defender for Endpoint alerts (id, title, host).

    Alerts of other products, and alerts without a usable providerAlertId, are
    left out: the connector only comments on Defender for Endpoint alerts.
    """
    alerts = trigger["object"]["properties"].get("alerts") or []
    found = []
    for alert in alerts if isinstance(alerts, list) else []:
        properties = alert.get("properties") if isinstance(alert, dict) else None
        if not isinstance(properties, dict):
            continue
        product = properties.get("productName")
        product = product if isinstance(product, str) else ""
        alert_id = properties.get("providerAlertId")
        if not isinstance(alert_id, str) or not _ALERT_ID.fullmatch(alert_id):
            continue
        if (
            "Defender Advanced Threat Protection" not in product
            and "Endpoint" not in product
        ):
            continue
        title = properties.get("alertDisplayName")
        host = properties.get("compromisedEntity")
        found.append(
            {
                "id": alert_id,
                "title": shown(title, 200) if isinstance(title, str) else "",
                "host": shown(host, 255) if isinstance(host, str) else None,
            }
        )
    return found


def _url_entity(entity: dict[str, Any], index: int) -> str:
    """Return the url of a Url entity; raise InvalidIncident if it has none."""
    path = f"object.properties.relatedEntities[{index}].properties.url"
    properties = entity.get("properties") or {}
    raw = properties.get("url")
    if isinstance(raw, str):
        return raw
    if raw is None and "Url" in properties:
        problem = "missing; the entity has Url, the alert-trigger spelling"
    elif raw is None:
        problem = "missing"
    else:
        problem = f"expected a string, got {_describe(raw)}"
    raise InvalidIncident(
        path,
        problem,
        "Send the address as a string in properties.url (camelCase), as the "
        "incident trigger does.",
    )


def extract(body: Any, max_objects: int) -> Extraction:
    """Validate a trigger body and list its analysable URLs and files.

    Errors name the JSON path as posted, so inside `{"Body": ...}` it starts
    with Body.
    """
    trigger, wrapper = _unwrapped(body)
    try:
        return _extract(trigger, max_objects)
    except InvalidIncident as exc:
        if wrapper is None:
            raise
        raise exc.under(wrapper) from None


def _extract(trigger: dict[str, Any], max_objects: int) -> Extraction:
    incident = _parse_incident(trigger)
    extraction = Extraction(incident=incident)
    seen: set[str] = set()
    entities = _entities(trigger)

    for index, entity in enumerate(entities):
        if entity_kind(entity) != "url":
            continue
        raw = _url_entity(entity, index)
        checked = normalise(raw)
        if not checked.analysable:
            extraction.skipped.append(
                {
                    "kind": "url",
                    "object": shown(raw, SHOWN_URL_CHARS),
                    "reason": checked.reason,
                }
            )
            continue
        # The same URL twice (after refanging and normalising) is analysed once.
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
        # The same file on the same device at the same path is analysed once.
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
