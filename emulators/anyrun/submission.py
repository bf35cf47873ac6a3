"""Reading POST /v1/analysis bodies: JSON, URL-encoded forms and streamed multipart."""

import hashlib
from typing import Any

from aiohttp import BodyPartReader, web

from emulators.anyrun.params import ParameterError
from emulators.anyrun.tasks import UploadedFile
from emulators.common import BodyError, read_json

CHUNK_BYTES = 256 * 1024
HEAD_BYTES = 4096
MAX_FIELD_BYTES = 64 * 1024


async def read_submission(
    request: web.Request,
) -> tuple[dict[str, Any], UploadedFile | None]:
    """Return the raw parameters and the uploaded file, if any.

    A multipart ``file`` part is hashed while it streams in, so memory use does
    not grow with the file size. Raises BodyError or ParameterError.
    """
    content_type = request.content_type
    if content_type == "application/json":
        body = await read_json(request)
        if not isinstance(body, dict):
            raise BodyError("the JSON body must be an object of parameters")
        return body, None
    if content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        return {name: str(value) for name, value in form.items()}, None
    if content_type == "multipart/form-data":
        return await _read_multipart(request)
    raise BodyError(
        "Content-Type must be application/json or multipart/form-data, "
        f"got {content_type or 'none'}"
    )


async def _read_multipart(
    request: web.Request,
) -> tuple[dict[str, Any], UploadedFile | None]:
    fields: dict[str, Any] = {}
    upload: UploadedFile | None = None
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise BodyError("nested multipart bodies are not supported")
        if part.name == "file":
            if upload is not None:
                raise ParameterError("file", "only one file may be sent")
            upload = await _hash_file_part(part)
        elif part.name:
            fields[part.name] = await _read_field(part)
    return fields, upload


async def _read_field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK_BYTES):
        data += chunk
        if len(data) > MAX_FIELD_BYTES:
            raise ParameterError(
                str(part.name), f"is longer than {MAX_FIELD_BYTES} bytes"
            )
    try:
        return data.decode(part.get_charset("utf-8"))
    except (UnicodeDecodeError, LookupError):
        raise ParameterError(str(part.name), "is not valid UTF-8 text") from None


async def _hash_file_part(part: BodyPartReader) -> UploadedFile:
    if not part.filename:
        raise ParameterError("file", "the multipart part has no filename")
    md5 = hashlib.md5(usedforsecurity=False)
    sha1 = hashlib.sha1(usedforsecurity=False)
    sha256 = hashlib.sha256()
    size = 0
    head = bytearray()
    while chunk := await part.read_chunk(CHUNK_BYTES):
        size += len(chunk)
        md5.update(chunk)
        sha1.update(chunk)
        sha256.update(chunk)
        if len(head) < HEAD_BYTES:
            head += chunk[: HEAD_BYTES - len(head)]
    if size == 0:
        raise ParameterError("file", "is empty")
    return UploadedFile(
        filename=part.filename,
        size=size,
        md5=md5.hexdigest(),
        sha1=sha1.hexdigest(),
        sha256=sha256.hexdigest(),
        head=bytes(head),
    )
