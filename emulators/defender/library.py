"""The Live Response library: files uploaded with POST /api/libraryfiles.

The library starts empty. File names may contain only letters, digits and
``- _ .``, a file may be at most 20 MB, and a name that exists already needs
``OverrideIfExists=true``.
"""

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import BodyPartReader, web

from emulators.clock import EmulatedClock
from emulators.defender.errors import DefenderError

# NOTE: 20 MB is read as 20 * 1024 * 1024 bytes; the documentation says only
# "20MB".
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_FIELD_BYTES = 64 * 1024
CHUNK_BYTES = 256 * 1024
FILE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
MAX_NAME_CHARS = 255
FORM_FIELDS = (
    "Description",
    "ParametersDescription",
    "HasParameters",
    "OverrideIfExists",
)
CREATED_BY = "Emulated API client"


@dataclass
class LibraryFile:
    file_name: str
    content: bytes
    sha256: str
    description: str
    parameters_description: str
    has_parameters: bool
    creation_time: str
    last_updated_time: str
    created_by: str = CREATED_BY

    def to_json(self) -> dict[str, object]:
        return {
            "fileName": self.file_name,
            "sha256": self.sha256,
            "description": self.description,
            "parametersDescription": self.parameters_description,
            "hasParameters": self.has_parameters,
            "creationTime": self.creation_time,
            "lastUpdatedTime": self.last_updated_time,
            "createdBy": self.created_by,
        }


@dataclass(frozen=True)
class LibraryUpload:
    file_name: str
    content: bytes
    fields: dict[str, str]


class Library:
    """Library files by name.

    NOTE: names match case-insensitively (``Script.sh`` replaces ``script.sh``);
    whether the real library is case-sensitive is not documented.
    """

    def __init__(self, clock: EmulatedClock) -> None:
        self._clock = clock
        self._files: dict[str, LibraryFile] = {}

    def clear(self) -> None:
        self._files.clear()

    def get(self, name: str) -> LibraryFile | None:
        return self._files.get(name.lower())

    def all(self) -> list[LibraryFile]:
        return list(self._files.values())

    def delete(self, name: str) -> bool:
        return self._files.pop(name.lower(), None) is not None

    def store(self, upload: LibraryUpload, now_text: str) -> LibraryFile:
        """Add or replace a file; raise DefenderError for a rule it breaks."""
        fields = upload.fields
        override = _form_bool(fields, "OverrideIfExists")
        has_parameters = _form_bool(fields, "HasParameters")
        existing = self.get(upload.file_name)
        if existing is not None and not override:
            raise DefenderError(
                400,
                f"A library file named '{existing.file_name}' already exists. Send "
                "OverrideIfExists=true to replace it.",
                "InvalidRequestBody",
            )
        file = LibraryFile(
            file_name=upload.file_name,
            content=upload.content,
            sha256=hashlib.sha256(upload.content).hexdigest(),
            description=fields.get("Description", ""),
            parameters_description=fields.get("ParametersDescription", ""),
            has_parameters=has_parameters,
            creation_time=existing.creation_time if existing else now_text,
            last_updated_time=now_text,
        )
        self._files[upload.file_name.lower()] = file
        return file


def _form_bool(fields: dict[str, str], name: str) -> bool:
    value = fields.get(name, "").strip()
    if value == "":
        return False
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise DefenderError(
        400, f"{name} must be true or false, got {value[:40]!r}", "InvalidRequestBody"
    )


def check_file_name(name: str) -> None:
    if not FILE_NAME.match(name) or len(name) > MAX_NAME_CHARS or name in (".", ".."):
        raise DefenderError(
            400,
            f"The file name {name[:80]!r} is invalid: library file names may "
            "contain only letters, digits, '-', '_' and '.'",
            "InvalidInput",
        )


async def read_library_upload(request: web.Request) -> LibraryUpload:
    """Read the multipart body of POST /api/libraryfiles; raise DefenderError."""
    if request.content_type != "multipart/form-data":
        raise DefenderError(
            400,
            "Content-Type must be multipart/form-data, got "
            f"{request.content_type or 'none'}",
            "InvalidRequestBody",
        )
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError) as exc:
        raise DefenderError(
            400, f"The multipart body is invalid: {exc}", "InvalidRequestBody"
        ) from None
    file_name: str | None = None
    content: bytes | None = None
    fields: dict[str, str] = {}
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise DefenderError(
                400, "Nested multipart bodies are not supported", "InvalidRequestBody"
            )
        # NOTE: the documentation names the part "File" in its table and "file"
        # in its curl example; both are accepted.
        if part.name in ("file", "File"):
            if content is not None:
                raise DefenderError(
                    400, "Only one file may be uploaded at a time", "InvalidRequestBody"
                )
            if not part.filename:
                raise DefenderError(
                    400, "The file part has no file name", "InvalidRequestBody"
                )
            file_name = part.filename
            check_file_name(file_name)
            content = await _read_limited(part, MAX_FILE_BYTES, file_too_large)
        elif part.name in FORM_FIELDS:
            data = await _read_limited(part, MAX_FIELD_BYTES, field_too_large)
            fields[part.name] = data.decode("utf-8", errors="replace")
    if file_name is None or content is None:
        raise DefenderError(
            400, "The multipart field 'file' is required", "MissingRequiredParameter"
        )
    if not content:
        raise DefenderError(400, "The uploaded file is empty", "InvalidRequestBody")
    return LibraryUpload(file_name=file_name, content=content, fields=fields)


def file_too_large(name: str | None) -> DefenderError:
    return DefenderError(
        400,
        f"The file is larger than the library maximum of {MAX_FILE_BYTES} bytes "
        "(20 MB)",
        "InvalidRequestBody",
    )


def field_too_large(name: str | None) -> DefenderError:
    return DefenderError(
        400, f"{name} is longer than {MAX_FIELD_BYTES} bytes", "InvalidRequestBody"
    )


async def _read_limited(
    part: BodyPartReader, limit: int, error: Callable[[str | None], DefenderError]
) -> bytes:
    """Read a part of at most ``limit`` bytes, or raise ``error(part.name)``.

    A part that is too large is still read to its end, so the client gets the
    400 response instead of a connection closed in the middle of its upload.
    """
    data = bytearray()
    too_large = False
    while chunk := await part.read_chunk(CHUNK_BYTES):
        if too_large:
            continue
        data += chunk
        if len(data) > limit:
            too_large = True
            data.clear()
    if too_large:
        raise error(part.name)
    return bytes(data)
