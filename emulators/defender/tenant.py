"""The API views of the catalogue: machine entities, alerts and DeviceFileEvents rows.

Catalogue alerts and file events give their times as ``minutesBeforeStart``,
minutes before the emulated clock started, and name catalogue files by path
(``file`` for the whole file, ``hashesOf`` for its hashes only). This module
turns them into the entities and rows the API returns, and fails at start-up
when a reference does not resolve.
"""

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from emulators.clock import EmulatedClock
from emulators.defender.actions import REQUESTOR, defender_time
from emulators.defender.catalogue import Catalogue, CatalogueError, DeviceFile, Machine
from emulators.defender.devices import Device
from emulators.defender.errors import DefenderError

TENANT_ID = "00000000-0000-4000-8000-0000000000aa"
# Defender shows a device as Inactive once it has sent no signal for more
# than seven days (Microsoft's "Fix unhealthy sensors" page).
INACTIVE_AFTER_SECONDS = 7 * 24 * 3600.0

EVIDENCE_FIELDS = (
    "entityType",
    "evidenceCreationTime",
    "sha1",
    "sha256",
    "fileName",
    "filePath",
    "processId",
    "processCommandLine",
    "processCreationTime",
    "parentProcessId",
    "parentProcessCreationTime",
    "parentProcessFileName",
    "parentProcessFilePath",
    "ipAddress",
    "url",
    "registryKey",
    "registryHive",
    "registryValueType",
    "registryValue",
    "accountName",
    "domainName",
    "userSid",
    "aadUserId",
    "userPrincipalName",
    "detectionStatus",
)
ALERT_STATUSES = ("New", "InProgress", "Resolved")
CLASSIFICATIONS = ("TruePositive", "InformationalExpectedActivity", "FalsePositive")
DETERMINATIONS = (
    "MultiStagedAttack",
    "MaliciousUserActivity",
    "CompromisedUser",
    "Malware",
    "Phishing",
    "UnwantedSoftware",
    "SecurityTesting",
    "LineOfBusinessApplication",
    "ConfirmedActivity",
    "NotMalicious",
    "InsufficientData",
    "Other",
)
# NOTE: the update-alert page capitalizes Status, Classification,
# Determination and Comment in its table but not in its example. Which
# spelling Defender accepts is unclear, so both are accepted here.
_PATCH_NAMES = {
    "status": "status",
    "Status": "status",
    "assignedTo": "assignedTo",
    "classification": "classification",
    "Classification": "classification",
    "determination": "determination",
    "Determination": "determination",
    "comment": "comment",
    "Comment": "comment",
}
_PATCH_VALUES = {
    "status": ALERT_STATUSES,
    "classification": CLASSIFICATIONS,
    "determination": DETERMINATIONS,
}


def machine_entity(device: Device, clock: EmulatedClock) -> dict[str, Any]:
    """Return the machine entity of ``device`` at the current emulated time."""
    now = clock.now()
    if device.online:
        last_seen = clock.utc(now)
        health = "Active"
    else:
        last_seen = clock.utc(device.offline_since)
        inactive = now - device.offline_since > INACTIVE_AFTER_SECONDS
        health = "Inactive" if inactive else "Active"
    return {
        **copy.deepcopy(device.machine.fields),
        "lastSeen": defender_time(last_seen),
        "healthStatus": health,
        "onboardingStatus": "Onboarded",
        "deviceValue": "Normal",
    }


def _file_at(machine: Machine, path: str, where: str) -> DeviceFile:
    for file in machine.files:
        if file.path == path:
            return file
    raise CatalogueError(f"{where}: machine {machine.id} has no file {path}")


def _before_start(clock: EmulatedClock, minutes: float) -> datetime:
    return clock.utc(0.0) - timedelta(minutes=minutes)


def _evidence(
    entry: dict[str, Any], machine: Machine, created: str, where: str
) -> dict[str, Any]:
    evidence: dict[str, Any] = dict.fromkeys(EVIDENCE_FIELDS)
    evidence["evidenceCreationTime"] = created
    for key, value in entry.items():
        if key == "file":
            file = _file_at(machine, value, where)
            evidence.update(
                sha1=file.sha1,
                sha256=file.sha256,
                fileName=file.name,
                filePath=file.folder,
            )
        elif key == "hashesOf":
            file = _file_at(machine, value, where)
            evidence.update(sha1=file.sha1, sha256=file.sha256)
        elif key in EVIDENCE_FIELDS:
            evidence[key] = value
        else:
            raise CatalogueError(f"{where}: unknown evidence field {key}")
    return evidence


def build_alert(
    raw: dict[str, Any], machine: Machine, clock: EmulatedClock
) -> dict[str, Any]:
    """Return the alert entity of a catalogue alert."""
    where = f"alert {raw['id']}"
    created_at = _before_start(clock, raw["minutesBeforeStart"])
    created = defender_time(created_at)
    event_time = defender_time(created_at - timedelta(minutes=1))
    settings = {"minutesBeforeStart", "evidence"}
    alert = {
        key: copy.deepcopy(value) for key, value in raw.items() if key not in settings
    }
    alert.update(
        investigationId=None,
        assignedTo=None,
        classification=None,
        determination=None,
        alertCreationTime=created,
        firstEventTime=event_time,
        lastEventTime=event_time,
        lastUpdateTime=created,
        resolvedTime=None,
        computerDnsName=machine.computer_dns_name,
        rbacGroupName=machine.fields.get("rbacGroupName"),
        aadTenantId=TENANT_ID,
        comments=[],
        evidence=[
            _evidence(entry, machine, created, where) for entry in raw["evidence"]
        ],
    )
    return alert


@dataclass
class AlertStore:
    """The alerts of the catalogue, with the comments and changes made through PATCH."""

    clock: EmulatedClock
    catalogue: Catalogue
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.alerts = {}
        for raw in self.catalogue.alerts:
            machine = self.catalogue.machine(raw["machineId"])
            assert machine is not None  # checked when the catalogue loads
            self.alerts[raw["id"].lower()] = build_alert(raw, machine, self.clock)

    def get(self, alert_id: str) -> dict[str, Any] | None:
        return self.alerts.get(alert_id.lower())

    def update(self, alert: dict[str, Any], body: Any) -> None:
        """Apply a PATCH body: change the given properties and append the comment.

        Raises DefenderError naming the first invalid property, before any change.
        """
        changes = parse_alert_patch(body)
        now = defender_time(self.clock.utc())
        comment = changes.pop("comment", None)
        if changes.get("status") == "Resolved" and alert["status"] != "Resolved":
            alert["resolvedTime"] = now
        elif "status" in changes and changes["status"] != "Resolved":
            alert["resolvedTime"] = None
        alert.update(changes)
        # Defender adds each comment to the alert's list of comments.
        if comment:
            alert["comments"].append(
                {"comment": comment, "createdBy": REQUESTOR, "createdTime": now}
            )
        alert["lastUpdateTime"] = now


def parse_alert_patch(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise DefenderError(
            400, "The request body must be a JSON object", "InvalidRequestBody"
        )
    changes: dict[str, Any] = {}
    for name, value in body.items():
        canonical = _PATCH_NAMES.get(name)
        if canonical is None:
            raise DefenderError(
                400,
                f"Property '{name}' cannot be updated; the updatable properties are "
                "status, assignedTo, classification, determination and comment",
                "InvalidRequestBody",
            )
        if canonical in changes:
            raise DefenderError(
                400, f"Property '{canonical}' is given twice", "InvalidRequestBody"
            )
        if value is not None and not isinstance(value, str):
            raise DefenderError(
                400, f"{canonical} must be a string", "InvalidRequestBody"
            )
        allowed = _PATCH_VALUES.get(canonical)
        if allowed is not None and value not in allowed:
            raise DefenderError(
                400,
                f"{canonical} must be one of {', '.join(allowed)}, got {value!r}",
                "InvalidRequestBody",
            )
        changes[canonical] = value
    if not changes:
        raise DefenderError(
            400, "The request body has no property to update", "InvalidRequestBody"
        )
    return changes


def file_event_rows(catalogue: Catalogue, clock: EmulatedClock) -> list[dict[str, Any]]:
    """Return the DeviceFileEvents rows of the catalogue.

    NOTE: FolderPath contains the full path including the file name. The schema
    reference calls it the folder that contains the file, so real rows may
    hold only the folder, and clients should handle both.
    """
    rows = []
    for raw in catalogue.file_events:
        machine = catalogue.machine(raw["machineId"])
        assert machine is not None  # checked when the catalogue loads
        where = f"file event {raw['reportId']}"
        if "file" in raw:
            file = _file_at(machine, raw["file"], where)
            path, name = file.path, file.name
            hashes = {"SHA1": file.sha1, "SHA256": file.sha256, "MD5": file.md5}
            size = file.size
        else:
            path = raw["path"]
            name = path.replace("\\", "/").rsplit("/", 1)[-1]
            hashes = {"SHA1": raw["sha1"], "SHA256": raw["sha256"], "MD5": raw["md5"]}
            size = raw["size"]
        rows.append(
            {
                "Timestamp": _before_start(clock, raw["minutesBeforeStart"]),
                "DeviceId": machine.id,
                "DeviceName": machine.computer_dns_name,
                "ActionType": raw["actionType"],
                "FileName": name,
                "FolderPath": path,
                **hashes,
                "FileSize": size,
                "FileOriginUrl": raw.get("fileOriginUrl"),
                "InitiatingProcessFileName": raw.get("initiatingProcessFileName"),
                "InitiatingProcessCommandLine": raw.get("initiatingProcessCommandLine"),
                "InitiatingProcessAccountName": raw.get("initiatingProcessAccountName"),
                "ReportId": raw["reportId"],
            }
        )
    return rows


def added_file_row(
    machine: Machine, file: DeviceFile, clock: EmulatedClock, report_id: int
) -> dict[str, Any]:
    """Return the FileCreated row of a file added at run time, stamped now."""
    return {
        "Timestamp": clock.utc(),
        "DeviceId": machine.id,
        "DeviceName": machine.computer_dns_name,
        "ActionType": "FileCreated",
        "FileName": file.name,
        "FolderPath": file.path,
        "SHA1": file.sha1,
        "SHA256": file.sha256,
        "MD5": file.md5,
        "FileSize": file.size,
        "FileOriginUrl": None,
        "InitiatingProcessFileName": None,
        "InitiatingProcessCommandLine": None,
        "InitiatingProcessAccountName": None,
        "ReportId": report_id,
    }
