"""Names of uploaded file blobs, which carry the waiting sub-orchestration's id.

A Live Response script uploads the file to `<container>/<sub-orchestration
id>/<sha256>`; the blob-created event handler reads the id back from the name
to raise the upload event on the right instance.
"""

from __future__ import annotations

import re

UPLOAD_EVENT = "FileUploaded"

# Sub-orchestration ids of file analyses: <parent id>:file-<16 hex digits>.
_BLOB_NAME = re.compile(r"^(inc-[a-z0-9-]{1,80}:file-[0-9a-f]{16})/([0-9a-f]{64})$")
_SUBJECT = re.compile(r"^/blobServices/default/containers/([^/]+)/blobs/(.+)$")


class InvalidUpload(ValueError):
    """A blob event that does not belong to a file analysis; the message says why."""


def upload_blob_name(sub_instance_id: str, sha256: str) -> str:
    name = f"{sub_instance_id}/{sha256.lower()}"
    if not _BLOB_NAME.match(name):
        raise ValueError(f"cannot build an upload blob name from {sub_instance_id!r}")
    return name


def parse_blob_event(
    event_type: str, subject: str, data: dict, container: str
) -> dict[str, object]:
    """Validate a BlobCreated event for the upload container; return its parts."""
    if event_type != "Microsoft.Storage.BlobCreated":
        raise InvalidUpload(
            f"event type {event_type!r} is not Microsoft.Storage.BlobCreated"
        )
    match = _SUBJECT.match(subject or "")
    if not match:
        raise InvalidUpload("subject is not a blob path")
    if match.group(1) != container:
        raise InvalidUpload(f"container {match.group(1)!r} is not the upload container")
    name = match.group(2)
    parts = _BLOB_NAME.match(name)
    if not parts:
        raise InvalidUpload("blob name is not <sub-orchestration id>/<sha256>")
    size = data.get("contentLength") if isinstance(data, dict) else None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidUpload(
            "data.contentLength is missing or not a non-negative integer"
        )
    return {
        "instance_id": parts.group(1),
        "sha256": parts.group(2),
        "blob": name,
        "size": size,
    }
