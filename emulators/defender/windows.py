"""What scripts/liveresponse/anyrun-upload.ps1 does, performed in Python.

PowerShell is not run here, so for a Windows device the emulator carries out
the PowerShell script's contract itself: it decodes the envelope with the
script's rules, takes the file from the device's disk folder or restores it
from the quarantine folder, checks its hashes, uploads it to the SAS URL with
httpx, and returns the same one-line JSON and exit code. The file is streamed
from disk, never read into memory as a whole. Transient upload failures are
retried with the script's attempts and waits, in emulated seconds. The messages
are the script's, with the SAS URL, its query and every ``sig=`` value
redacted. Retry warnings, which the script writes to stderr, are logged here.
"""

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from emulators.clock import EmulatedClock
from emulators.defender import envelope
from emulators.defender.devices import Device

log = logging.getLogger(__name__)

BLOCK_SIZE = 4 * 1024 * 1024  # also the largest file sent with one Put Blob
MAX_BLOCKS = 50000
STORAGE_API_VERSION = "2021-08-06"
MAX_ENVELOPE_CHARS = 32768
MAX_MESSAGE_CHARS = 400
STREAM_BUFFER_BYTES = 81920
REQUEST_TIMEOUT_SECONDS = 300.0
TIME_BUDGET_SECONDS = 540.0
# Each PUT is sent at most MAX_PUT_ATTEMPTS times, and retry N waits
# RETRY_DELAYS_SECONDS[N - 1] emulated seconds first.
MAX_PUT_ATTEMPTS = 5
RETRY_DELAYS_SECONDS = (1.0, 2.0, 4.0, 8.0)
# HTTP statuses and .NET WebExceptionStatus names (failures without a
# response) after which the script retries a PUT. Other failures, such as
# NameResolutionFailure, end the upload at once.
RETRY_STATUS_CODES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_WEB_STATUSES = frozenset(
    {
        "ConnectFailure",
        "Timeout",
        "ConnectionClosed",
        "ReceiveFailure",
        "SendFailure",
        "KeepAliveFailure",
        "PipelineFailure",
    }
)
# NOTE: what MpCmdRun.exe -Restore returns and prints when nothing matches is
# not documented; these stand in for it.
RESTORE_EXIT_CODE = 2
RESTORE_LAST_LINE = "No quarantined item matches the request."
TRANSCRIPT_FOLDER = (
    "C:\\ProgramData\\Microsoft\\Windows Defender Advanced Threat Protection"
    "\\Temp\\PSScriptOutputs"
)


class Failure(Exception):
    """A failure that the script reports as ``{"status": "failed", ...}``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class UploadRefused(Exception):
    """The SAS URL points away from the loopback interface, so nothing is sent."""


@dataclass(frozen=True)
class UploadArguments:
    path: str
    sha256: str
    sha1: str
    threat_name: str
    url: str
    max_bytes: int | None


@dataclass(frozen=True)
class WindowsRun:
    exit_code: int
    line: str
    result: dict[str, Any]
    path: str | None

    def script_output(self) -> str:
        """Return the output as Defender reports a PowerShell script's output.

        NOTE: a PowerShell RunScript output starts with the transcript line and
        ends with NUL padding in Microsoft's published example; the padding
        length (three here) is not documented.
        """
        transcript = f"{TRANSCRIPT_FOLDER}\\PSScript_Transcript_{uuid.uuid4()}.txt"
        return (
            f"Transcript started, output file is {transcript}\n{self.line}\n"
            + "\u0000" * 3
        )


class _Secrets:
    """The URL and query to redact from every message."""

    def __init__(self) -> None:
        self.url = ""
        self.query = ""

    def protect(self, text: str) -> str:
        if self.url:
            text = text.replace(self.url, "<url>")
        if self.query:
            text = text.replace(self.query, "<sas>")
        return re.sub(r"sig=[^&\s]+", "sig=<redacted>", text)


async def run_upload_script(
    payload: str, device: Device, clock: EmulatedClock
) -> WindowsRun:
    """Perform anyrun-upload.ps1 with ``payload`` as its argument on ``device``.

    Raises UploadRefused, before anything is sent, when the SAS URL's host is
    not a loopback address.
    """
    secrets = _Secrets()
    started = clock.now()
    path: str | None = None
    try:
        arguments = _read_arguments(payload, secrets)
        path = arguments.path
        source, file = _locate(arguments, device)
        size = await asyncio.to_thread(_check_copy, file, arguments)
        await _send_file(file, size, arguments.url, clock, started, device.id)
        result: dict[str, Any] = {
            "status": "uploaded",
            "size": size,
            "sha256": arguments.sha256,
            "source": source,
        }
        exit_code = 0
    except Failure as failure:
        result = _failed(failure.reason, failure.message, secrets)
        exit_code = 1
    except (OSError, ValueError) as exc:
        message = f"unexpected error: {type(exc).__name__}: {exc}"
        result = _failed("internal_error", message, secrets)
        exit_code = 1
    line = json.dumps(result, ensure_ascii=True, separators=(",", ":"))
    return WindowsRun(exit_code=exit_code, line=line, result=result, path=path)


def _failed(reason: str, message: str, secrets: _Secrets) -> dict[str, Any]:
    message = secrets.protect(message)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "..."
    return {"status": "failed", "reason": reason, "message": message}


# Argument


def _decode_envelope(payload: str) -> dict[str, Any]:
    if not payload:
        raise Failure("bad_argument", "expected one argument: the v1 envelope")
    if len(payload) > MAX_ENVELOPE_CHARS:
        raise Failure(
            "bad_argument", f"argument is longer than {MAX_ENVELOPE_CHARS} characters"
        )
    version = re.match(r"^(v[0-9]{1,4})\.", payload)
    if version and version.group(1) != "v1":
        raise Failure(
            "bad_argument",
            f"unsupported envelope version {version.group(1)}; this script reads v1",
        )
    if not payload.startswith(envelope.PREFIX):
        raise Failure(
            "bad_argument",
            "argument is not a v1 envelope (expected v1.<base64url JSON>)",
        )
    encoded = payload[len(envelope.PREFIX) :]
    if not re.fullmatch(r"[A-Za-z0-9_-]+", encoded) or len(encoded) % 4 == 1:
        raise Failure("bad_argument", "envelope payload is not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        text = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Failure(
            "bad_argument", "envelope payload is not base64url of UTF-8 text"
        ) from None
    if "\x00" in text:
        raise Failure("bad_argument", "envelope JSON contains NUL characters")
    try:
        value = json.loads(text)
    except ValueError:
        raise Failure("bad_argument", "envelope is not valid JSON") from None
    if not isinstance(value, dict):
        raise Failure("bad_argument", "envelope JSON must be an object")
    # PowerShell matches property names case-insensitively.
    fields: dict[str, Any] = {}
    for key, item in value.items():
        fields.setdefault(key.lower(), item)
    return fields


def _string_field(fields: dict[str, Any], name: str, required: bool) -> str:
    value = fields.get(name)
    if value is None:
        if required:
            raise Failure(
                "bad_argument", f'envelope JSON is missing the string field "{name}"'
            )
        return ""
    if not isinstance(value, str):
        raise Failure("bad_argument", f'envelope field "{name}" must be a string')
    return value


def _check_url(url: str, secrets: _Secrets) -> None:
    shape_error = Failure(
        "bad_argument",
        "url is not a blob SAS URL of the form "
        "https://<account>.blob.core.windows.net/<container>/<blob>?<sas>",
    )
    if re.search(r'[^\x21-\x7E]|["\\]', url):
        raise shape_error
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise shape_error from None
    if not parts.scheme or not parts.netloc:
        raise shape_error
    loopback = host in ("127.0.0.1", "localhost")
    if parts.scheme == "http" and not loopback:
        raise Failure(
            "bad_argument",
            "url must use https; http is accepted only for 127.0.0.1 and localhost, "
            f"not for host {host}",
        )
    if parts.scheme not in ("http", "https"):
        raise Failure(
            "bad_argument", f"url scheme {parts.scheme} is not supported; use https"
        )
    if parts.username is not None or parts.fragment:
        raise Failure("bad_argument", "url must not contain user info or a fragment")
    if not re.match(r"^/[^/]+/.*[^/]$", parts.path):
        raise Failure(
            "bad_argument", f"url path must name a container and a blob (host {host})"
        )
    if not re.search(r"&sig=[^&]", "&" + parts.query):
        raise Failure(
            "bad_argument",
            "url has no SAS signature (sig parameter) in its query string",
        )
    secrets.url = url
    secrets.query = parts.query
    if not envelope.is_loopback_host(host):
        raise UploadRefused(host)


def _read_arguments(payload: str, secrets: _Secrets) -> UploadArguments:
    fields = _decode_envelope(payload)
    path = _string_field(fields, "path", True)
    if not re.match(r"^([A-Za-z]:\\|\\\\)", path):
        raise Failure(
            "bad_argument",
            "path must be a full path such as C:\\dir\\file.exe or "
            "\\\\server\\share\\file.exe",
        )
    sha256 = _string_field(fields, "sha256", True)
    if not re.fullmatch(r"[0-9A-Fa-f]{64}", sha256):
        raise Failure("bad_argument", "sha256 must be 64 hex digits")
    sha1 = _string_field(fields, "sha1", False)
    if sha1 and not re.fullmatch(r"[0-9A-Fa-f]{40}", sha1):
        raise Failure("bad_argument", "sha1 must be 40 hex digits")
    threat_name = _string_field(fields, "threat_name", False)
    url = _string_field(fields, "url", True)
    # Redact the URL even from failures that the check itself reports.
    secrets.url = url
    _check_url(url, secrets)
    max_bytes = fields.get("max_bytes")
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0
    ):
        raise Failure("bad_argument", "max_bytes must be a non-negative integer")
    return UploadArguments(
        path=path,
        sha256=sha256.lower(),
        sha1=sha1.lower(),
        threat_name=threat_name,
        url=url,
        max_bytes=max_bytes,
    )


# Getting the file


def _check_size(size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise Failure(
            "too_large", f"file is {size} bytes, more than max_bytes {max_bytes}"
        )
    if size > MAX_BLOCKS * BLOCK_SIZE:
        raise Failure(
            "too_large",
            f"file is {size} bytes, more than the maximum of {MAX_BLOCKS} blocks of "
            f"{BLOCK_SIZE} bytes",
        )


def _locate(arguments: UploadArguments, device: Device) -> tuple[str, Path]:
    on_disk = device.windows_disk_path(arguments.path)
    if on_disk is not None and on_disk.is_file():
        _check_size(on_disk.stat().st_size, arguments.max_bytes)
        return "disk", on_disk
    if on_disk is not None and on_disk.exists():
        raise Failure(
            "file_not_found", f"path exists but is not a file: {arguments.path}"
        )
    return "quarantine", _restore(arguments, device)


def _restore(arguments: UploadArguments, device: Device) -> Path:
    quarantined = device.windows_quarantine_path(arguments.path)
    candidates = [quarantined] if quarantined and quarantined.is_file() else []
    restored = _matching(candidates, arguments.sha256)
    if restored is None and arguments.threat_name:
        candidates = device.quarantined_by_threat(arguments.threat_name)
        restored = _matching(candidates, arguments.sha256)
    if restored is None:
        raise Failure(
            "restore_failed",
            "file not found on disk, and MpCmdRun.exe restored nothing for "
            f"{arguments.path} (exit code {RESTORE_EXIT_CODE}): {RESTORE_LAST_LINE}",
        )
    return restored


def _matching(candidates: list[Path], sha256: str) -> Path | None:
    for candidate in candidates:
        if _hash_file(candidate, "sha256") == sha256:
            return candidate
    if candidates:
        raise Failure(
            "hash_mismatch", f"no file restored from quarantine has SHA-256 {sha256}"
        )
    return None


def _hash_file(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm, usedforsecurity=algorithm == "sha256")
    with path.open("rb") as stream:
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _check_copy(file: Path, arguments: UploadArguments) -> int:
    size = file.stat().st_size
    _check_size(size, arguments.max_bytes)
    sha256 = _hash_file(file, "sha256")
    if sha256 != arguments.sha256:
        raise Failure(
            "hash_mismatch",
            f"SHA-256 of {arguments.path} is {sha256}, expected {arguments.sha256}",
        )
    if arguments.sha1:
        sha1 = _hash_file(file, "sha1")
        if sha1 != arguments.sha1:
            raise Failure(
                "hash_mismatch",
                f"SHA-1 of {arguments.path} is {sha1}, expected {arguments.sha1}",
            )
    return size


# Upload


async def _send_file(
    file: Path,
    size: int,
    url: str,
    clock: EmulatedClock,
    started: float,
    device_id: str,
) -> None:
    async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as client:
        put = _BlobPut(client, url, clock, started, device_id)
        if size <= BLOCK_SIZE:
            headers = {"x-ms-blob-type": "BlockBlob"}
            await put.send(
                "", "Put Blob", "application/octet-stream", headers, file, 0, size
            )
            return
        block_count = -(-size // BLOCK_SIZE)
        block_ids = []
        for index in range(block_count):
            # Block ids must all have the same length; this one is 16 characters
            # of [A-Za-z0-9], so it needs no escaping in the query string.
            block_id = base64.b64encode(f"block-{index:06d}".encode()).decode()
            offset = index * BLOCK_SIZE
            length = min(BLOCK_SIZE, size - offset)
            operation = f"Put Block {index + 1}/{block_count}"
            suffix = f"&comp=block&blockid={block_id}"
            await put.send(
                suffix, operation, "application/octet-stream", {}, file, offset, length
            )
            block_ids.append(block_id)
        body = (
            '<?xml version="1.0" encoding="utf-8"?><BlockList>'
            + "".join(f"<Latest>{block_id}</Latest>" for block_id in block_ids)
            + "</BlockList>"
        ).encode("utf-8")
        headers = {"x-ms-blob-content-type": "application/octet-stream"}
        await put.send_bytes(
            "&comp=blocklist", "Put Block List", "application/xml", headers, body
        )


class _BlobPut:
    """PUT requests to one blob within the script's time budget.

    A retry is safe because every PUT is idempotent. It writes the same bytes
    to the same blob name or block id, so a retry after a lost response stores
    the same content again.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        clock: EmulatedClock,
        started: float,
        device_id: str,
    ) -> None:
        self._client = client
        self._url = url
        self._clock = clock
        self._started = started
        self._device_id = device_id

    async def send(
        self,
        suffix: str,
        operation: str,
        content_type: str,
        headers: dict[str, str],
        file: Path,
        offset: int,
        length: int,
    ) -> None:
        # Each attempt reads the range from the start again, as the script
        # rewinds its stream before a retry.
        await self._put(
            suffix,
            operation,
            content_type,
            headers,
            lambda: _stream(file, offset, length),
            length,
        )

    async def send_bytes(
        self,
        suffix: str,
        operation: str,
        content_type: str,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        await self._put(
            suffix, operation, content_type, headers, lambda: body, len(body)
        )

    async def _put(
        self,
        suffix: str,
        operation: str,
        content_type: str,
        headers: dict[str, str],
        content: Callable[[], bytes | AsyncIterator[bytes]],
        length: int,
    ) -> None:
        """Send one PUT, retrying transient failures as Invoke-BlobPut does."""
        attempt = 1
        while True:
            remaining = TIME_BUDGET_SECONDS - self._elapsed()
            if remaining <= 0:
                raise Failure(
                    "upload_failed",
                    f"time budget of {TIME_BUDGET_SECONDS:g} s ran out during the "
                    f"upload ({operation})",
                )
            timeout = self._clock.wall_seconds(min(REQUEST_TIMEOUT_SECONDS, remaining))
            failure = await self._attempt(
                suffix, operation, content_type, headers, content(), length, timeout
            )
            if failure is None:
                return
            if attempt >= MAX_PUT_ATTEMPTS:
                raise Failure("upload_failed", f"{failure} after {attempt} attempts")
            delay = RETRY_DELAYS_SECONDS[attempt - 1]
            if self._elapsed() + delay >= TIME_BUDGET_SECONDS:
                raise Failure(
                    "upload_failed",
                    f"{failure} after {attempt} attempts, with no time left in the "
                    f"budget of {TIME_BUDGET_SECONDS:g} s for a retry",
                )
            log.warning(
                "device %s: %s; retrying in %g s (attempt %d of %d)",
                self._device_id,
                failure,
                delay,
                attempt + 1,
                MAX_PUT_ATTEMPTS,
            )
            await asyncio.sleep(self._clock.wall_seconds(delay))
            attempt += 1

    async def _attempt(
        self,
        suffix: str,
        operation: str,
        content_type: str,
        headers: dict[str, str],
        content: bytes | AsyncIterator[bytes],
        length: int,
        timeout: float,
    ) -> str | None:
        """Send one PUT attempt, as Send-BlobPutAttempt does.

        Returns None after HTTP 201, or the message of a failure that may be
        retried. Raises Failure for any other failure.
        """
        request_headers = {
            "x-ms-version": STORAGE_API_VERSION,
            "Content-Type": content_type,
            "Content-Length": str(length),
            **headers,
        }
        try:
            response = await self._client.put(
                self._url + suffix,
                content=content,
                headers=request_headers,
                timeout=timeout,
            )
        except httpx.TransportError as exc:
            status = _web_exception_status(exc)
            message = f"{operation} failed: {status}"
            if status in RETRY_WEB_STATUSES:
                return message
            raise Failure("upload_failed", message) from None
        if response.status_code == 201:
            return None
        message = f"{operation} returned HTTP {response.status_code}"
        error_code = response.headers.get("x-ms-error-code", "")
        if re.fullmatch(r"[A-Za-z0-9]+", error_code):
            message += f" ({error_code})"
        if response.status_code in RETRY_STATUS_CODES:
            return message
        raise Failure("upload_failed", message)

    def _elapsed(self) -> float:
        return self._clock.now() - self._started


def _web_exception_status(exc: httpx.TransportError) -> str:
    """Return the .NET WebExceptionStatus name that the script reports for ``exc``.

    A failed name lookup is also an httpx.ConnectError, so the exception chain
    is searched for socket.gaierror.
    """
    if isinstance(exc, httpx.TimeoutException):
        return "Timeout"
    if isinstance(exc, httpx.ConnectError):
        if _caused_by(exc, socket.gaierror):
            return "NameResolutionFailure"
        return "ConnectFailure"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "ConnectionClosed"
    if isinstance(exc, httpx.ReadError):
        return "ReceiveFailure"
    if isinstance(exc, httpx.WriteError):
        return "SendFailure"
    return "UnknownError"


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, kind):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


async def _stream(file: Path, offset: int, length: int) -> AsyncIterator[bytes]:
    with file.open("rb") as source:
        source.seek(offset)
        remaining = length
        while remaining > 0:
            chunk = source.read(min(STREAM_BUFFER_BYTES, remaining))
            if not chunk:
                raise Failure(
                    "internal_error", f"the copy ended {remaining} bytes early"
                )
            remaining -= len(chunk)
            yield chunk
