"""The Sentinel threat-intelligence upload API: STIX validation, storage, rate limit.

The rules follow Microsoft's documentation of
``threat-intelligence-stix-objects:upload`` (api-version 2024-02-01-preview).
The body is ``{"sourcesystem", "stixobjects"}``, and the source system must not
be "Microsoft Sentinel". A request carries 1 to 100 objects of the types
indicator, attack-pattern, threat-actor, identity and relationship. Invalid
objects are reported as ``{"errors": [{"recordIndex", "errorMessages"}]}`` with
HTTP 200, while the valid ones are stored. ``spec_version`` is optional because
the API defaults it to 2.1. STIX patterns are checked with the stix2-patterns
validator.
"""

import json
import math
import re
from collections import deque
from datetime import datetime
from typing import Any

from stix2patterns.validator import run_validator

from emulators.clock import EmulatedClock

API_VERSION = "2024-02-01-preview"
MAX_OBJECTS = 100
RESTRICTED_SOURCE = "Microsoft Sentinel"
OBJECT_TYPES = (
    "indicator",
    "attack-pattern",
    "threat-actor",
    "identity",
    "relationship",
)
SPEC_VERSIONS = ("2.0", "2.1")
# STIX 2.1 pattern-type open vocabulary.
PATTERN_TYPES = ("stix", "pcre", "sigma", "snort", "suricata", "yara")
RATE_WINDOW_SECONDS = 60.0

_STIX_ID = re.compile(
    r"^(?P<type>[a-z][a-z0-9-]*)--"
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
# STIX timestamps are RFC 3339 in UTC with a Z.
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def _actual(value: Any) -> str:
    if value is None:
        return "NULL"
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _error(name: str, problem: str, value: Any) -> str:
    return f"Error for Property={name}: {problem}. Actual value: {_actual(value)}."


def _missing(name: str) -> str:
    return _error(name, "Required property is missing", None)


def _timestamp(obj: dict[str, Any], name: str, errors: list[str]) -> datetime | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        errors.append(_error(name, "Invalid timestamp, expected RFC 3339 UTC", value))
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        errors.append(_error(name, "Invalid timestamp, expected RFC 3339 UTC", value))
        return None


def _required_timestamp(
    obj: dict[str, Any], name: str, errors: list[str]
) -> datetime | None:
    if obj.get(name) is None:
        errors.append(_missing(name))
        return None
    return _timestamp(obj, name, errors)


def _required_string(obj: dict[str, Any], name: str, errors: list[str]) -> str | None:
    value = obj.get(name)
    if value is None:
        errors.append(_missing(name))
        return None
    if not isinstance(value, str) or not value.strip():
        errors.append(_error(name, "Must be a non-empty string", value))
        return None
    return value


def validate_stix_object(obj: Any) -> list[str]:
    """Return the error messages for one STIX object; an empty list means valid."""
    if not isinstance(obj, dict):
        return [_error("type", "The STIX object must be a JSON object", obj)]
    errors: list[str] = []

    object_type = obj.get("type")
    if object_type is None:
        errors.append(_missing("type"))
    elif object_type not in OBJECT_TYPES:
        errors.append(
            _error(
                "type",
                f"Unsupported type, use one of {', '.join(OBJECT_TYPES)}",
                object_type,
            )
        )
        object_type = None

    object_id = obj.get("id")
    if object_id is None:
        errors.append(_missing("id"))
    elif not isinstance(object_id, str) or not (match := _STIX_ID.match(object_id)):
        errors.append(_error("id", "Must have the form <type>--<UUID>", object_id))
    elif object_type and match.group("type") != object_type:
        errors.append(
            _error(
                "id", f"The prefix must be the object type '{object_type}'", object_id
            )
        )

    spec_version = obj.get("spec_version")
    if spec_version is not None and spec_version not in SPEC_VERSIONS:
        errors.append(_error("spec_version", "Must be 2.0 or 2.1", spec_version))

    created = _required_timestamp(obj, "created", errors)
    modified = _required_timestamp(obj, "modified", errors)
    if created and modified and modified < created:
        errors.append(
            _error("modified", "Must not be earlier than created", obj["modified"])
        )

    if object_type == "indicator":
        _validate_indicator(obj, spec_version or "2.1", errors)
    elif object_type == "relationship":
        _required_string(obj, "relationship_type", errors)
        for name in ("source_ref", "target_ref"):
            ref = _required_string(obj, name, errors)
            if ref is not None and not _STIX_ID.match(ref):
                errors.append(_error(name, "Must be a STIX id <type>--<UUID>", ref))
    elif object_type is not None:
        _required_string(obj, "name", errors)

    _validate_common_optional(obj, errors)
    return errors


def _validate_indicator(
    obj: dict[str, Any], spec_version: str, errors: list[str]
) -> None:
    pattern = _required_string(obj, "pattern", errors)
    pattern_type = _required_string(obj, "pattern_type", errors)
    if pattern_type is not None and pattern_type not in PATTERN_TYPES:
        errors.append(
            _error(
                "pattern_type",
                f"Unsupported pattern type, use one of {', '.join(PATTERN_TYPES)}",
                pattern_type,
            )
        )
    if pattern is not None and pattern_type == "stix":
        problems = run_validator(pattern, stix_version=spec_version)
        if problems:
            detail = "; ".join(str(p).removeprefix("FAIL: ") for p in problems)
            errors.append(
                _error("pattern", f"Invalid STIX pattern ({detail})", pattern)
            )
    valid_from = _required_timestamp(obj, "valid_from", errors)
    valid_until = _timestamp(obj, "valid_until", errors)
    if valid_from and valid_until and valid_until <= valid_from:
        errors.append(
            _error("valid_until", "Must be later than valid_from", obj["valid_until"])
        )


def _validate_common_optional(obj: dict[str, Any], errors: list[str]) -> None:
    confidence = obj.get("confidence")
    if confidence is not None and (
        isinstance(confidence, bool)
        or not isinstance(confidence, int)
        or not 0 <= confidence <= 100
    ):
        errors.append(
            _error("confidence", "Must be an integer from 0 to 100", confidence)
        )
    for name in ("labels", "indicator_types"):
        value = obj.get(name)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            errors.append(_error(name, "Must be an array of strings", value))
    for name in ("name", "description"):
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            errors.append(_error(name, "Must be a string", value))
    revoked = obj.get("revoked")
    if revoked is not None and not isinstance(revoked, bool):
        errors.append(_error("revoked", "Must be a boolean", revoked))


class StixStore:
    """Valid uploaded objects per workspace, upserted by STIX id."""

    def __init__(self) -> None:
        self._objects: dict[str, dict[str, dict[str, Any]]] = {}

    def clear(self) -> None:
        self._objects.clear()

    def upsert(self, workspace_id: str, obj: dict[str, Any], source: str) -> bool:
        """Store ``obj``; return True if it is new, False if it replaced an object."""
        objects = self._objects.setdefault(workspace_id.lower(), {})
        key = obj["id"].lower()
        previous = objects.get(key)
        objects[key] = {
            "object": obj,
            "sourcesystem": source,
            "uploads": 1 if previous is None else previous["uploads"] + 1,
        }
        return previous is None

    def state(self) -> dict[str, Any]:
        """Return indicators and other objects per workspace id, keyed by STIX id."""
        indicators: dict[str, dict[str, Any]] = {}
        others: dict[str, dict[str, Any]] = {}
        for workspace_id, objects in self._objects.items():
            for record in objects.values():
                obj = record["object"]
                summary = {
                    "type": obj["type"],
                    "name": obj.get("name"),
                    "sourcesystem": record["sourcesystem"],
                    "uploads": record["uploads"],
                    "modified": obj.get("modified"),
                }
                if obj["type"] == "indicator":
                    summary.update(
                        pattern=obj.get("pattern"),
                        pattern_type=obj.get("pattern_type"),
                        confidence=obj.get("confidence"),
                        labels=obj.get("labels", []),
                        valid_until=obj.get("valid_until"),
                        description=obj.get("description"),
                    )
                    indicators.setdefault(workspace_id, {})[obj["id"]] = summary
                else:
                    others.setdefault(workspace_id, {})[obj["id"]] = summary
        return {"indicators": indicators, "otherStixObjects": others}


class RateLimiter:
    """At most ``limit`` requests per key in any window of 60 emulated seconds."""

    def __init__(self, clock: EmulatedClock, limit: int) -> None:
        self._clock = clock
        self._limit = limit
        self._requests: dict[str, deque[float]] = {}

    def clear(self) -> None:
        self._requests.clear()

    def acquire(self, key: str) -> int | None:
        """Count one request; return the seconds to wait instead if the limit is hit."""
        now = self._clock.now()
        times = self._requests.setdefault(key, deque())
        while times and times[0] <= now - RATE_WINDOW_SECONDS:
            times.popleft()
        if len(times) >= self._limit:
            return max(1, math.ceil(times[0] + RATE_WINDOW_SECONDS - now))
        times.append(now)
        return None
