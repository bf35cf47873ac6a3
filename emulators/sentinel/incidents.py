"""Sentinel incidents: seeding from trigger bodies, updates with etags, and comments.

A PUT needs title, severity and status, and a stale etag gives 409 Conflict. A
comment has at most 30,000 characters and an incident at most 100 comments,
the limits that Microsoft documents for Sentinel.
"""

import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulators.config import ConfigError

INCIDENT_ID = (
    r"/subscriptions/[^/]+/resourceGroups/[^/]+"
    r"/providers/Microsoft\.OperationalInsights/workspaces/[^/]+"
    r"/providers/Microsoft\.SecurityInsights/incidents/[^/]+"
)
_INCIDENT_ID = re.compile(f"^{INCIDENT_ID}$", re.IGNORECASE)

SEVERITIES = ("High", "Medium", "Low", "Informational")
STATUSES = ("New", "Active", "Closed")
CLASSIFICATIONS = ("Undetermined", "TruePositive", "BenignPositive", "FalsePositive")
CLASSIFICATION_REASONS = (
    "SuspiciousActivity",
    "SuspiciousButExpected",
    "IncorrectAlertLogic",
    "InaccurateData",
)
# Properties that a PUT may change. ARM ignores the read-only ones in a PUT body.
WRITABLE_PROPERTIES = (
    "title",
    "description",
    "severity",
    "status",
    "classification",
    "classificationReason",
    "classificationComment",
    "owner",
    "labels",
    "firstActivityTimeUtc",
    "lastActivityTimeUtc",
)
# Properties of a trigger body that GET {incidentId} does not return.
TRIGGER_ONLY_PROPERTIES = ("relatedEntities", "alerts", "bookmarks", "comments")
MAX_COMMENT_LENGTH = 30_000
MAX_COMMENTS = 100
COMMENT_TOO_LONG = f"Comment length should not exceed {MAX_COMMENT_LENGTH} characters"


class FieldError(ValueError):
    """A request body field is missing or invalid; str() is ``<field>: <problem>``."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")


class TriggerError(ValueError):
    """A body is not a Sentinel incident trigger body."""


class CommentLimitError(ValueError):
    """The comment is too long or the incident has the maximum number of comments."""


def new_etag() -> str:
    return f'"{uuid.uuid4()}"'


def same_etag(sent: str, current: str) -> bool:
    """Compare etags, ignoring surrounding quotes and a weak W/ prefix."""

    def bare(value: str) -> str:
        value = value.strip()
        if value.startswith("W/"):
            value = value[2:]
        return value.strip('"')

    return bare(sent) == bare(current)


@dataclass
class Incident:
    """One incident: its ARM resource, workspace, entities, alerts and comments."""

    arm_id: str
    name: str
    etag: str
    type: str
    properties: dict[str, Any]
    workspace_id: str | None
    entities: list[Any] = field(default_factory=list)
    alerts: list[Any] = field(default_factory=list)
    comments: dict[str, dict[str, Any]] = field(default_factory=dict)

    def resource(self) -> dict[str, Any]:
        """Return the incident as GET {incidentId} returns it."""
        properties = json.loads(json.dumps(self.properties))
        additional = properties.setdefault("additionalData", {})
        additional["commentsCount"] = len(self.comments)
        additional.setdefault("alertsCount", len(self.alerts))
        return {
            "id": self.arm_id,
            "name": self.name,
            "etag": self.etag,
            "type": self.type,
            "properties": properties,
        }


def parse_trigger(body: Any) -> Incident:
    """Build an incident from a trigger body, raising TriggerError if it is not one.

    The body may be wrapped as ``{"Body": {...}}``, as a Logic App passes it on.
    A bare incident resource (``id`` and ``properties``) is accepted too, without
    a workspace id.
    """
    if isinstance(body, dict):
        for key in ("Body", "body"):
            if isinstance(body.get(key), dict):
                body = body[key]
                break
    if not isinstance(body, dict):
        raise TriggerError("the trigger body must be a JSON object")
    resource = body.get("object", body)
    if not isinstance(resource, dict):
        raise TriggerError("object must be the incident resource")
    arm_id = resource.get("id")
    if not isinstance(arm_id, str) or not _INCIDENT_ID.match(arm_id):
        raise TriggerError(
            f"object.id must be an incident ARM id matching {INCIDENT_ID}, "
            f"got {arm_id!r}"
        )
    properties = resource.get("properties")
    if not isinstance(properties, dict):
        raise TriggerError("object.properties must be a JSON object")
    workspace_id = body.get("workspaceId")
    if workspace_id is not None and not isinstance(workspace_id, str):
        raise TriggerError("workspaceId must be a string")
    stored = {
        key: value
        for key, value in properties.items()
        if key not in TRIGGER_ONLY_PROPERTIES
    }
    stored["labels"] = [_stored_label(label) for label in stored.get("labels") or []]
    return Incident(
        arm_id=arm_id,
        name=resource.get("name") or arm_id.rsplit("/", 1)[-1],
        etag=resource.get("etag") or new_etag(),
        type=resource.get("type") or "Microsoft.SecurityInsights/Incidents",
        properties=stored,
        workspace_id=workspace_id,
        entities=list(properties.get("relatedEntities") or []),
        alerts=list(properties.get("alerts") or []),
    )


def _stored_label(label: Any) -> dict[str, Any]:
    if isinstance(label, dict):
        return {
            "labelName": label.get("labelName"),
            "labelType": label.get("labelType", "User"),
        }
    return {"labelName": str(label), "labelType": "User"}


def load_trigger_files(directory: Path) -> list[Any]:
    """Read every *.json in ``directory`` (sorted by name) as a trigger body.

    Raises ConfigError naming the file that is not valid JSON or not a trigger.
    """
    bodies = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            parse_trigger(body)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"invalid incident trigger file {path}: {exc}") from None
        bodies.append(body)
    return bodies


def validate_incident_put(body: Any) -> dict[str, Any]:
    """Return the writable properties of a PUT body, raising FieldError if invalid.

    Labels are stored with labelType "User", because labelType is read-only.
    """
    if not isinstance(body, dict):
        raise FieldError("body", "must be a JSON object")
    properties = body.get("properties")
    if not isinstance(properties, dict):
        raise FieldError("properties", "required, a JSON object")

    title = properties.get("title")
    if not isinstance(title, str) or not title.strip():
        raise FieldError("properties.title", "required, a non-empty string")
    _require_choice(properties, "severity", SEVERITIES)
    _require_choice(properties, "status", STATUSES)

    classification = properties.get("classification")
    if classification is not None and classification not in CLASSIFICATIONS:
        raise FieldError(
            "properties.classification",
            f"must be one of {', '.join(CLASSIFICATIONS)}, got {classification!r}",
        )
    if properties["status"] == "Closed" and classification is None:
        raise FieldError("properties.classification", "required when status is Closed")
    reason = properties.get("classificationReason")
    if reason is not None and reason not in CLASSIFICATION_REASONS:
        raise FieldError(
            "properties.classificationReason",
            f"must be one of {', '.join(CLASSIFICATION_REASONS)}, got {reason!r}",
        )
    for name in ("description", "classificationComment"):
        value = properties.get(name)
        if value is not None and not isinstance(value, str):
            raise FieldError(f"properties.{name}", "must be a string")
    owner = properties.get("owner")
    if owner is not None and not isinstance(owner, dict):
        raise FieldError("properties.owner", "must be a JSON object")

    updates = {
        name: properties[name] for name in WRITABLE_PROPERTIES if name in properties
    }
    if "labels" in properties:
        updates["labels"] = _validate_labels(properties["labels"])
    return updates


def _require_choice(
    properties: dict[str, Any], name: str, allowed: tuple[str, ...]
) -> None:
    value = properties.get(name)
    if value is None:
        raise FieldError(f"properties.{name}", f"required, one of {', '.join(allowed)}")
    if value not in allowed:
        raise FieldError(
            f"properties.{name}", f"must be one of {', '.join(allowed)}, got {value!r}"
        )


def _validate_labels(labels: Any) -> list[dict[str, str]]:
    if not isinstance(labels, list):
        raise FieldError("properties.labels", "must be an array")
    stored = []
    for index, label in enumerate(labels):
        name = label.get("labelName") if isinstance(label, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise FieldError(
                f"properties.labels[{index}].labelName", "required, a non-empty string"
            )
        stored.append({"labelName": name, "labelType": "User"})
    return stored


def validate_comment_put(body: Any) -> str:
    """Return the comment message, raising FieldError or CommentLimitError."""
    properties = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(properties, dict):
        raise FieldError("properties", "required, a JSON object")
    message = properties.get("message")
    if not isinstance(message, str) or not message:
        raise FieldError("properties.message", "required, a non-empty string")
    if len(message) > MAX_COMMENT_LENGTH:
        raise CommentLimitError(COMMENT_TOO_LONG)
    return message


class IncidentStore:
    """Incidents keyed by lower-case ARM id; reset() restores the seeded ones."""

    def __init__(self, seed: list[Any]) -> None:
        self._seed = seed
        self._incidents: dict[str, Incident] = {}
        self.reset()

    def reset(self) -> None:
        self._incidents = {}
        for body in self._seed:
            self.add(body)

    def add(self, body: Any) -> tuple[Incident, bool]:
        """Add or replace a trigger body's incident; return it and whether it is new."""
        incident = parse_trigger(body)
        key = incident.arm_id.lower()
        created = key not in self._incidents
        self._incidents[key] = incident
        return incident, created

    def get(self, arm_id: str) -> Incident | None:
        return self._incidents.get(arm_id.lower())

    def all(self) -> list[Incident]:
        return list(self._incidents.values())

    def workspace_ids(self) -> set[str]:
        return {
            incident.workspace_id.lower()
            for incident in self._incidents.values()
            if incident.workspace_id
        }
