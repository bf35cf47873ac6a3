"""File activities: find the file on its device, fetch it through Live Response,
verify the uploaded blob and stream it to the sandbox.

The SAS URL exists only inside `request_file_upload`: it is built, encoded
into the script argument and sent to Defender, and never returned, logged or
stored in the orchestration history.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import clients
from activities._blueprint import bp, require
from activities.submission import NotSubmitted, submit_once
from clients import errors
from clients.anyrun import ChunkReader
from enrichment.files import os_family
from enrichment.uploads import upload_blob_name

log = logging.getLogger("connector.activities")

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts" / "liveresponse"
SCRIPT_NAMES = {"linux": "anyrun-upload.sh", "windows": "anyrun-upload.ps1"}
SCRIPT_DESCRIPTION = (
    "ANY.RUN connector: copies or restores one file and uploads it to a SAS URL."
)
SCRIPT_PARAMETERS = "One argument: v1.<base64url JSON with path, sha256, sha1, url>."
LIBRARY_CHECK_SECONDS = 600

_library_checked: dict[str, float] = {}


def _quote_kql(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _machine(defender, request: dict[str, Any]) -> dict[str, Any] | None:
    if request.get("device_id"):
        try:
            return defender.get_machine(request["device_id"])
        except errors.NotFoundError:
            pass
    for name in (request.get("host_fqdn"), request.get("host_name")):
        if name:
            machines = defender.find_machines(name)
            if machines:
                return machines[0]
    return None


def _hunt(
    defender, device_id: str, sha256: str | None, sha1: str | None
) -> dict | None:
    """Find the newest DeviceFileEvents row of this file on this device."""
    for column, value in (("SHA256", sha256), ("SHA1", sha1)):
        if not value:
            continue
        query = (
            "DeviceFileEvents"
            f" | where DeviceId == '{_quote_kql(device_id)}' and {column} == '{value}'"
            " | order by Timestamp desc"
            " | project FolderPath, FileName, SHA256, SHA1"
            " | take 1"
        )
        rows = defender.run_hunting(query)
        if rows:
            return rows[0]
    return None


def _full_path(folder: str, name: str) -> str:
    """Join FolderPath and FileName unless FolderPath already ends with the name."""
    if folder.replace("\\", "/").rstrip("/").endswith("/" + name) or folder == name:
        return folder
    separator = "\\" if "\\" in folder else "/"
    return folder.rstrip("\\/") + separator + name


@bp.activity_trigger(input_name="payload", activity="resolve_file_source")
def resolve_file_source(payload: dict[str, Any]) -> dict[str, Any]:
    """Find the file's Defender device, OS and path, hunting for an unknown path."""
    request = require(payload, "file_name")
    defender = clients.defender()
    machine = _machine(defender, request)
    if machine is None:
        return {
            "status": "unavailable",
            "reason": "the host is not a Defender for Endpoint device "
            f"(device id {request.get('device_id') or '-'}, "
            f"host {request.get('host_name') or '-'})",
        }
    device_id = machine["id"]
    # The entity's osFamily wins; Defender's osPlatform fills in "Unknown".
    family = request.get("os_family") or os_family(machine.get("osPlatform"))
    if family not in ("windows", "linux"):
        return {
            "status": "unavailable",
            "reason": f"the host's OS {machine.get('osPlatform')!r} is not supported; "
            "files are fetched from Windows and Linux hosts",
        }

    sha256, sha1 = request.get("sha256"), request.get("sha1")
    path = None
    if request.get("directory"):
        path = _full_path(request["directory"], request["file_name"])
    if path is None or not sha256:
        row = _hunt(defender, device_id, sha256, sha1)
        if row is None and path is None:
            return {
                "status": "unavailable",
                "reason": "the file's path is unknown and advanced hunting found no "
                f"DeviceFileEvents row for it on {machine.get('computerDnsName')}",
            }
        if row is not None:
            path = path or _full_path(
                row.get("FolderPath") or "", row.get("FileName") or ""
            )
            sha256 = sha256 or (row.get("SHA256") or "").lower() or None
            sha1 = sha1 or (row.get("SHA1") or "").lower() or None
    if not sha256:
        return {
            "status": "unavailable",
            "reason": "the file's SHA-256 is unknown (the incident has only SHA-1 and "
            "advanced hunting found no SHA-256)",
        }
    log.info("file.resolved device=%s os=%s", device_id, family)
    return {
        "status": "ok",
        "device_id": device_id,
        "host": machine.get("computerDnsName"),
        "os": family,
        "path": path,
        "sha256": sha256,
        "sha1": sha1,
    }


@bp.activity_trigger(input_name="payload", activity="ensure_live_response_script")
def ensure_live_response_script(payload: dict[str, Any]) -> dict[str, Any]:
    """Make sure the OS's upload script is in the Live Response library and current."""
    request = require(payload, "os")
    name = SCRIPT_NAMES[request["os"]]
    content = (SCRIPTS / name).read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    checked = _library_checked.get(digest)
    if checked and time.monotonic() - checked < LIBRARY_CHECK_SECONDS:
        return {"status": "ok", "script": name, "uploaded": False}

    defender = clients.defender()
    try:
        library = {item.get("fileName"): item for item in defender.list_library()}
        current = library.get(name)
        uploaded = False
        if current is None or (current.get("sha256") or "").lower() != digest:
            defender.upload_library_file(
                name, content, SCRIPT_DESCRIPTION, SCRIPT_PARAMETERS
            )
            uploaded = True
            log.info("library.uploaded script=%s sha256=%s", name, digest)
    except errors.AuthenticationError as exc:
        log.error("library.forbidden script=%s error=%s", name, exc)
        return {
            "status": "rejected",
            "reason": f"{exc}; grant the app Library.Manage "
            "(scripts/grant-defender-permissions.ps1)",
        }
    _library_checked[digest] = time.monotonic()
    return {"status": "ok", "script": name, "uploaded": uploaded}


def encode_argument(path: str, sha256: str, sha1: str | None, url: str) -> str:
    """Build the script argument: v1. plus unpadded base64url of the JSON fields."""
    fields = {"path": path, "sha256": sha256, "url": url}
    if sha1:
        fields["sha1"] = sha1
    raw = json.dumps(fields, separators=(",", ":")).encode()
    return "v1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _marker(blob_name: str) -> str:
    return "[anyrun:" + hashlib.sha256(blob_name.encode()).hexdigest()[:16] + "]"


def _own_active_action(defender, device_id: str, blob_name: str) -> str | None:
    """Return the id of our own still-active action for this blob, if one exists."""
    marker = _marker(blob_name)
    for action in defender.list_actions(device_id):
        if action.get("status") in ("Pending", "InProgress") and marker in str(
            action.get("requestorComment") or ""
        ):
            return action.get("id")
    return None


@bp.activity_trigger(input_name="payload", activity="request_file_upload")
def request_file_upload(payload: dict[str, Any]) -> dict[str, Any]:
    """Start the Live Response script that uploads the file through a blob SAS URL."""
    request = require(
        payload, "device_id", "script", "path", "sha256", "instance_id", "expires_at"
    )
    blob = upload_blob_name(request["instance_id"], request["sha256"])
    defender = clients.defender()
    expires_at = datetime.fromisoformat(request["expires_at"])
    url = clients.uploads().upload_url(blob, expires_at)
    argument = encode_argument(
        request["path"], request["sha256"], request.get("sha1"), url
    )
    comment = (
        f"ANY.RUN connector: upload {Path(request['path'].replace(chr(92), '/')).name} "
        f"for sandbox analysis {_marker(blob)}"
    )
    try:
        action = defender.run_script(
            request["device_id"], request["script"], argument, comment
        )
    except errors.RejectedError as exc:
        if exc.code == "ActiveRequestAlreadyExists":
            own = _own_active_action(defender, request["device_id"], blob)
            if own:
                log.info(
                    "liveresponse.adopted device=%s action=%s",
                    request["device_id"],
                    own,
                )
                return {"status": "requested", "action_id": own, "blob": blob}
            log.info("liveresponse.busy device=%s", request["device_id"])
            return {"status": "busy", "reason": str(exc)}
        # The script may have left the library since this worker last checked;
        # the next ensure_live_response_script call then looks again.
        _library_checked.clear()
        log.error("liveresponse.rejected device=%s error=%s", request["device_id"], exc)
        return {"status": "rejected", "reason": str(exc)}
    except errors.ThrottledError as exc:
        log.warning("liveresponse.throttled device=%s", request["device_id"])
        return {
            "status": "throttled",
            "reason": str(exc),
            "retry_after": exc.retry_after,
        }
    except errors.AuthenticationError as exc:
        hint = (
            "the device group has no automation level; set one in Defender settings"
            if exc.code == "DisallowedOperation"
            else "grant the app Machine.LiveResponse "
            "(scripts/grant-defender-permissions.ps1)"
        )
        log.error(
            "liveresponse.forbidden device=%s error=%s", request["device_id"], exc
        )
        return {"status": "rejected", "reason": f"{exc}; {hint}"}
    except errors.NotFoundError as exc:
        return {"status": "rejected", "reason": str(exc)}
    log.info(
        "liveresponse.requested device=%s action=%s", request["device_id"], action["id"]
    )
    return {"status": "requested", "action_id": action["id"], "blob": blob}


def _script_report(defender, action_id: str) -> dict[str, Any]:
    """Read the script's own JSON line from the RunScript result, if there is one."""
    try:
        result = defender.script_result(action_id, 0)
    except errors.ConnectorError as exc:
        return {"status": "unknown", "message": f"no script output: {exc}"}
    lines = [
        line for line in str(result.get("script_output") or "").splitlines() if line
    ]
    for line in reversed(lines):
        try:
            parsed = json.loads(line.strip().strip("\x00"))
        except ValueError:
            continue
        if isinstance(parsed, dict) and "status" in parsed:
            return {k: parsed.get(k) for k in ("status", "reason", "message", "size")}
    errors_text = str(result.get("script_errors") or "")[:300]
    return {
        "status": "unknown",
        "message": f"exit code {result.get('exit_code')}; {errors_text or 'no output'}",
    }


@bp.activity_trigger(input_name="payload", activity="check_upload_action")
def check_upload_action(payload: dict[str, Any]) -> dict[str, Any]:
    """Return the action's status, the script's report and whether the blob exists."""
    request = require(payload, "action_id", "blob")
    defender = clients.defender()
    action = defender.get_action(request["action_id"])
    status = action.get("status")
    answer: dict[str, Any] = {"state": status, "blob_exists": False}
    store = clients.uploads()
    if store.exists(request["blob"]):
        answer.update(blob_exists=True, size=store.size(request["blob"]))
    if (
        status in ("Succeeded", "Failed", "TimeOut", "Cancelled")
        and not answer["blob_exists"]
    ):
        answer["script"] = _script_report(defender, request["action_id"])
    return answer


@bp.activity_trigger(input_name="payload", activity="cancel_upload_action")
def cancel_upload_action(payload: dict[str, Any]) -> dict[str, Any]:
    """Cancel a machine action that did not finish by the upload deadline."""
    request = require(payload, "action_id")
    try:
        action = clients.defender().cancel_action(
            request["action_id"],
            request.get("comment") or "ANY.RUN connector: deadline",
        )
    except (errors.RejectedError, errors.NotFoundError) as exc:
        return {"status": "not_cancelled", "reason": str(exc)}
    log.info("liveresponse.cancelled action=%s", request["action_id"])
    return {"status": "cancelled", "state": action.get("status")}


@bp.activity_trigger(input_name="payload", activity="discard_upload")
def discard_upload(payload: dict[str, Any]) -> dict[str, Any]:
    """Delete an uploaded blob that will not be submitted."""
    request = require(payload, "blob")
    deleted = clients.uploads().delete(request["blob"])
    log.info("upload.discarded blob=%s deleted=%s", request["blob"], deleted)
    return {"deleted": deleted}


@bp.activity_trigger(input_name="payload", activity="submit_file_analysis")
def submit_file_analysis(payload: dict[str, Any]) -> dict[str, Any]:
    """Verify the uploaded blob's SHA-256, stream it to the sandbox, delete it."""
    request = require(payload, "blob", "sha256", "file_name", "options", "tag")
    sandbox = clients.anyrun()
    store = clients.uploads()
    blob, tag = request["blob"], request["tag"]
    sent: dict[str, int] = {}

    def send() -> str:
        if not store.exists(blob):
            raise NotSubmitted(
                {
                    "status": "failed",
                    "reason": "the uploaded blob is gone before submission",
                }
            )
        digest = hashlib.sha256()
        size = 0
        for chunk in store.chunks(blob):
            digest.update(chunk)
            size += len(chunk)
        if digest.hexdigest() != request["sha256"].lower():
            store.delete(blob)
            log.warning("upload.hash_mismatch blob_size=%d", size)
            raise NotSubmitted(
                {
                    "status": "hash_mismatch",
                    "reason": f"the uploaded file's SHA-256 {digest.hexdigest()} does "
                    f"not match the entity's {request['sha256'].lower()}; nothing was "
                    "submitted",
                }
            )
        try:
            task_id = sandbox.submit_file(
                lambda: ChunkReader(store.chunks(blob)),
                request["file_name"],
                request["options"],
                tag,
            )
        except (errors.RejectedError, errors.AuthenticationError):
            store.delete(blob)
            raise
        store.delete(blob)
        sent["size"] = size
        return task_id

    answer = submit_once(request, send, cleanup=lambda: store.delete(blob))
    if "size" in sent:
        answer["size"] = sent["size"]
    return answer
