"""Files that a control request adds to a catalogue device at run time.

``POST /_emulator/devices/{machineId}/files`` takes ``{"path", "location",
"content_base64", "threatName"}``, where ``threatName`` is optional and allowed
only for ``location`` "quarantine". The emulator then treats the file like a
catalogue file: it is in the device's folder, advanced hunting finds its
DeviceFileEvents row, and Live Response scripts fetch it. A reset removes it.
"""

import base64
import binascii
import hashlib
import json
import math
import posixpath
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from emulators.defender.catalogue import LOCATIONS, DeviceFile, Machine

MAX_CONTENT_BYTES = 50 * 1024**2
# The base64 of MAX_CONTENT_BYTES plus room for the other fields.
MAX_BODY_BYTES = 4 * math.ceil(MAX_CONTENT_BYTES / 3) + 64 * 1024
MAX_PATH_CHARS = 1024
_FIELDS = {"path", "location", "content_base64", "threatName"}
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# A drive letter, then backslash-separated names without the characters that
# Windows forbids in file names.
_WINDOWS_PATH = re.compile(r'[A-Za-z]:(?:\\[^\\/:*?"<>|]+)+')
_LINUX_EXAMPLE = "/home/azureuser/sample.bin"
_WINDOWS_EXAMPLE = "C:\\Users\\j.doe\\Downloads\\sample.exe"


class AddFileError(ValueError):
    """An invalid request to add a device file, with the HTTP ``status`` to return."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class NewFile:
    """A validated file to add: its catalogue-style record and its content."""

    file: DeviceFile
    content: bytes


async def read_body(request: web.Request) -> bytes:
    """Read the request body, raising a 413 AddFileError past MAX_BODY_BYTES.

    The app's client_max_size is far lower, so the body is read from the
    stream with this route's own limit.
    """
    chunks = []
    size = 0
    async for chunk in request.content.iter_chunked(1024 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise AddFileError(
                f"the request body is over {MAX_BODY_BYTES} bytes; the file content "
                f"may be at most {MAX_CONTENT_BYTES} bytes (50 MiB)",
                413,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def parse_new_file(raw: bytes, machine: Machine) -> NewFile:
    """Validate a request body for ``machine`` and return the file to add.

    Raises AddFileError naming the field at fault. Decoding and hashing up to
    50 MiB takes a while, so callers run this in a worker thread.
    """
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise AddFileError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise AddFileError(
            'the body must be {"path", "location", "content_base64", "threatName"}'
        )
    unknown = set(body) - _FIELDS
    if unknown:
        raise AddFileError(
            f"unknown fields {sorted(unknown)}; the fields are {sorted(_FIELDS)}"
        )
    path = _check_path(body.get("path"), machine)
    location = body.get("location")
    if location not in LOCATIONS:
        raise AddFileError(
            f"location must be one of {', '.join(LOCATIONS)}, got {location!r}"
        )
    threat_name = _check_threat_name(body.get("threatName"), location)
    content = _decode_content(body.get("content_base64"))
    file = DeviceFile(
        path=path,
        location=location,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        sha1=hashlib.sha1(content, usedforsecurity=False).hexdigest(),
        md5=hashlib.md5(content, usedforsecurity=False).hexdigest(),
        threat_name=threat_name,
        content_spec=(),
    )
    return NewFile(file=file, content=content)


def _check_path(path: Any, machine: Machine) -> str:
    if not isinstance(path, str) or not path:
        raise AddFileError("path is required: a non-empty string")
    if len(path) > MAX_PATH_CHARS:
        raise AddFileError(f"path is longer than {MAX_PATH_CHARS} characters")
    if _CONTROL_CHARACTERS.search(path):
        raise AddFileError("path must not contain control characters")
    if machine.is_linux:
        normal = posixpath.normpath(path)
        if not path.startswith("/") or normal != path or "//" in path or path == "/":
            raise AddFileError(
                f"path {path!r} is not a full Linux path for device "
                f"{machine.computer_dns_name}: use one such as {_LINUX_EXAMPLE}, "
                "without '.' or '..' parts, repeated slashes or a trailing slash"
            )
        return path
    names = path.split("\\")[1:]
    if _WINDOWS_PATH.fullmatch(path) is None or any(
        name in (".", "..") or name.endswith((" ", ".")) for name in names
    ):
        raise AddFileError(
            f"path {path!r} is not a full Windows path for device "
            f"{machine.computer_dns_name}: use one such as {_WINDOWS_EXAMPLE}, with "
            "a drive letter and backslashes, without '.' or '..' parts, names that "
            'end in a space or dot, or the characters / : * ? " < > |'
        )
    return path


def _check_threat_name(threat_name: Any, location: str) -> str | None:
    if threat_name is None:
        return None
    if location != "quarantine":
        raise AddFileError(
            'threatName is allowed only with "location": "quarantine"; remove it'
        )
    if not isinstance(threat_name, str) or not threat_name.strip():
        raise AddFileError(
            "threatName must be a non-empty string such as Virus:DOS/EICAR_Test_File"
        )
    return threat_name


def _decode_content(encoded: Any) -> bytes:
    if not isinstance(encoded, str):
        raise AddFileError("content_base64 is required: the file content in base64")
    try:
        content = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise AddFileError(
            "content_base64 is not valid base64: use the standard alphabet "
            "(A-Z a-z 0-9 + /) with = padding and no line breaks"
        ) from None
    if len(content) > MAX_CONTENT_BYTES:
        raise AddFileError(
            f"the file content is {len(content)} bytes, over the maximum of "
            f"{MAX_CONTENT_BYTES} bytes (50 MiB)",
            413,
        )
    return content
