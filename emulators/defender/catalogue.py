"""The emulated Defender tenant from catalogue.json: devices, their files, alerts
and the DeviceFileEvents rows of advanced hunting.

A file's content is either ``{"text": ...}`` (UTF-8) or ``{"seed": ...}``: bytes
made by SHA-256 in counter mode, ``sha256(seed + counter as 8 big-endian bytes)``
concatenated and cut to ``size``. So the content is the same in every run, and
loading checks it against the recorded size and hashes. Every file is either on
the device's disk (``location`` "disk") or only in its Defender quarantine
("quarantine").
"""

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

CATALOGUE_PATH = Path(__file__).with_name("catalogue.json")
LINUX = "Linux"
WINDOWS_PLATFORMS = ("Windows10", "Windows11", "WindowsServer2019", "WindowsServer2022")
LOCATIONS = ("disk", "quarantine")
_HEX = {"sha256": 64, "sha1": 40, "md5": 32}


class CatalogueError(ValueError):
    """catalogue.json is inconsistent with itself."""


@dataclass(frozen=True)
class DeviceFile:
    """A file of a device, as the catalogue records it.

    A file added at run time (see added_files.py) has an empty ``content_spec``,
    and its content exists only in the device's folder.
    """

    path: str
    location: str
    size: int
    sha256: str
    sha1: str
    md5: str
    threat_name: str | None
    content_spec: tuple[tuple[str, str], ...]

    @property
    def name(self) -> str:
        if "\\" in self.path:
            return PureWindowsPath(self.path).name
        return PurePosixPath(self.path).name

    @property
    def folder(self) -> str:
        if "\\" in self.path:
            return str(PureWindowsPath(self.path).parent)
        return str(PurePosixPath(self.path).parent)

    def content(self) -> bytes:
        if not self.content_spec:
            raise ValueError(
                f"{self.path} was added at run time; its content is only in the "
                "device's folder"
            )
        return _content(self.content_spec, self.size)


@dataclass(frozen=True)
class Machine:
    """A device: the fields of the machine entity plus the emulator's settings.

    ``automation_level`` None means that the device group has no automation
    level, so Live Response is not allowed. ``offline_hours`` is how long before
    the emulator started an offline device was last seen.
    """

    id: str
    computer_dns_name: str
    os_platform: str
    online: bool
    offline_hours: float
    automation_level: str | None
    fields: dict[str, Any]
    files: tuple[DeviceFile, ...]

    @property
    def is_linux(self) -> bool:
        return self.os_platform == LINUX


@dataclass(frozen=True)
class Catalogue:
    machines: tuple[Machine, ...]
    alerts: tuple[dict[str, Any], ...]
    file_events: tuple[dict[str, Any], ...]

    @classmethod
    def load(cls, path: Path = CATALOGUE_PATH) -> "Catalogue":
        return _load_cached(str(path))

    def machine(self, machine_id: str) -> Machine | None:
        for machine in self.machines:
            if machine.id == machine_id:
                return machine
        return None


@functools.cache
def _load_cached(path: str) -> Catalogue:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    machines = tuple(_machine(item) for item in raw["machines"])
    by_id = {machine.id: machine for machine in machines}
    if len(by_id) != len(machines):
        raise CatalogueError("machine ids must be unique")
    alerts = tuple(raw["alerts"])
    for alert in alerts:
        if alert["machineId"] not in by_id:
            raise CatalogueError(f"alert {alert['id']}: unknown machine")
    events = tuple(raw["fileEvents"])
    for event in events:
        if event["machineId"] not in by_id:
            raise CatalogueError(f"file event {event['reportId']}: unknown machine")
    return Catalogue(machines=machines, alerts=alerts, file_events=events)


def _machine(item: dict[str, Any]) -> Machine:
    platform = item["osPlatform"]
    if platform != LINUX and platform not in WINDOWS_PLATFORMS:
        raise CatalogueError(f"machine {item['id']}: unsupported osPlatform {platform}")
    if not re.fullmatch(r"[0-9a-f]{40}", item["id"]):
        raise CatalogueError(f"machine {item['id']}: the id must be 40 hex digits")
    settings = {"online", "offlineHours", "automationLevel", "files"}
    return Machine(
        id=item["id"],
        computer_dns_name=item["computerDnsName"],
        os_platform=platform,
        online=bool(item["online"]),
        offline_hours=float(item.get("offlineHours", 0)),
        automation_level=item["automationLevel"],
        fields={key: value for key, value in item.items() if key not in settings},
        files=tuple(_file(item["id"], entry) for entry in item["files"]),
    )


def _file(machine_id: str, entry: dict[str, Any]) -> DeviceFile:
    spec = tuple(sorted(entry["content"].items()))
    file = DeviceFile(
        path=entry["path"],
        location=entry["location"],
        size=int(entry["size"]),
        sha256=entry["sha256"],
        sha1=entry["sha1"],
        md5=entry["md5"],
        threat_name=entry.get("threatName"),
        content_spec=spec,
    )
    where = f"machine {machine_id} file {file.path}"
    if file.location not in LOCATIONS:
        raise CatalogueError(f"{where}: location must be one of {LOCATIONS}")
    data = file.content()
    actual = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "sha1": hashlib.sha1(data, usedforsecurity=False).hexdigest(),
        "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
    }
    if len(data) != file.size:
        raise CatalogueError(f"{where}: content is {len(data)} bytes, not {file.size}")
    for name, value in actual.items():
        if getattr(file, name) != value:
            raise CatalogueError(f"{where}: {name} of the content is {value}")
    return file


@functools.cache
def _content(spec: tuple[tuple[str, str], ...], size: int) -> bytes:
    fields = dict(spec)
    if "text" in fields:
        return fields["text"].encode("utf-8")
    seed = fields["seed"].encode("utf-8")
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def check_hex(name: str, value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(f"[0-9a-f]{{{_HEX[name]}}}", value)
