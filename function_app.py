"""Entry points of the Function App: the incident webhook, the status API, the
operator endpoints and the blob-created event.

The orchestrators and activities live in their own packages and are
registered here as blueprints; the operator endpoints' logic is in operations/.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import azure.durable_functions as df
import azure.functions as func

import activities
import operations
import orchestrators
from clients.redaction import install as install_redaction
from enrichment.incident import InvalidIncident, extract, instance_id
from enrichment.progress import object_progress
from enrichment.uploads import UPLOAD_EVENT, InvalidUpload, parse_blob_event
from orchestrators.enrich_incident import child_instance_id
from settings import SettingsError, current

install_redaction()
log = logging.getLogger("connector.http_api")

MAX_BODY_BYTES = 4 * 1024 * 1024
RUNNING_STATES = {"Pending", "Running", "ContinuedAsNew", "Suspended"}

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(activities.bp)
for blueprint in orchestrators.blueprints:
    app.register_functions(blueprint)


def _json(
    status: int, body: Any, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body),
        status_code=status,
        mimetype="application/json",
        headers=headers,
    )


def _error(status: int, code: str, field: str, message: str) -> func.HttpResponse:
    return _json(status, {"error": code, "field": field, "message": message})


def _read_body(req: func.HttpRequest) -> tuple[Any, func.HttpResponse | None]:
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return None, _error(
            415,
            "unsupported_media_type",
            "Content-Type",
            f"expected application/json, got {content_type or 'nothing'}; "
            "send the trigger body as JSON",
        )
    raw = req.get_body() or b""
    if len(raw) > MAX_BODY_BYTES:
        return None, _error(
            413,
            "payload_too_large",
            "$",
            f"the body is {len(raw)} bytes; at most {MAX_BODY_BYTES} are accepted; "
            "send only the incident trigger body",
        )
    try:
        return json.loads(raw.decode("utf-8")), None
    except (UnicodeDecodeError, ValueError) as exc:
        return None, _error(
            400,
            "invalid_json",
            "$",
            f"the body is not valid JSON: {exc}; send the trigger body as UTF-8 JSON",
        )
    except RecursionError:
        return None, _error(
            400,
            "invalid_json",
            "$",
            "the body nests arrays or objects too deeply to parse; send the "
            "incident trigger body, which nests fewer than 20 levels",
        )


async def _status(
    client: df.DurableOrchestrationClient, iid: str, show_input: bool = False
):
    status = await client.get_status(iid, show_input=show_input)
    if status is None or status.runtime_status is None:
        return None
    return status


def _links(req: func.HttpRequest, client, iid: str) -> dict[str, str]:
    """Return the instance id and the app's own status URL.

    The Durable management URLs (`get_client_response_links`) are left out on
    purpose: in Azure they carry the extension's system key, which can
    terminate or purge any instance of the task hub.
    """
    base = req.url.split("?")[0].rstrip("/")
    return {"id": iid, "statusUri": f"{base}/{iid}"}


@app.route(route="incidents", methods=["POST"])
@app.durable_client_input(client_name="client")
async def post_incident(req: func.HttpRequest, client) -> func.HttpResponse:
    """Validate a Sentinel incident trigger body and start its enrichment once."""
    body, problem = _read_body(req)
    if problem:
        # The playbook's run history hides the response, so the reason is logged.
        log.warning(
            "incident.rejected status=%d answer=%s",
            problem.status_code,
            problem.get_body().decode("utf-8", "replace")[:500],
        )
        return problem
    try:
        settings = current()
    except SettingsError as exc:
        log.error("incident.config_error error=%s", exc)
        return _error(500, "configuration_error", "settings", str(exc))
    try:
        extraction = extract(body, settings.max_objects_per_incident)
    except InvalidIncident as exc:
        log.warning("incident.invalid field=%s problem=%s", exc.field, exc.problem)
        return _json(400, exc.to_json())

    iid = instance_id(extraction.incident, extraction.object_keys())
    existing = await _status(client, iid)
    if existing is not None:
        log.info(
            "incident.duplicate instance=%s status=%s",
            iid,
            existing.runtime_status.value,
        )
        return _json(
            200,
            {
                "created": False,
                "runtimeStatus": existing.runtime_status.value,
                **_links(req, client, iid),
            },
        )

    plan = {
        "incident": extraction.incident,
        "objects": extraction.objects,
        "skipped": extraction.skipped,
        "alerts": extraction.alerts,
        "options": settings.plan_options(),
    }
    try:
        await client.start_new("enrich_incident", instance_id=iid, client_input=plan)
    except Exception as exc:  # noqa: BLE001 - the 1.x client raises plain Exception
        again = await _status(client, iid)
        if again is None:
            log.error("incident.start_failed instance=%s error=%s", iid, exc)
            return _error(
                503, "start_failed", "instanceId", f"could not start {iid}; retry later"
            )
        return _json(
            200,
            {
                "created": False,
                "runtimeStatus": again.runtime_status.value,
                **_links(req, client, iid),
            },
        )

    log.info(
        "incident.accepted instance=%s incident=%s objects=%d skipped=%d",
        iid,
        extraction.incident.get("number"),
        len(extraction.objects),
        len(extraction.skipped),
    )
    links = _links(req, client, iid)
    return _json(
        202,
        {"created": True, **links},
        headers={"Location": links["statusUri"], "Retry-After": "10"},
    )


@app.route(route="incidents", methods=["GET"])
@app.durable_client_input(client_name="client")
async def list_incidents(req: func.HttpRequest, client) -> func.HttpResponse:
    """List enrichments, filtered by runtime status and creation time, paged."""
    return await operations.list_incidents(req, client)


# Registered before the `incidents/{instanceId}` routes: the Functions host
# prefers the literal segment anyway, and devhost takes the first match.
@app.route(route="incidents/purge", methods=["POST"])
@app.durable_client_input(client_name="client")
async def purge_incidents(req: func.HttpRequest, client) -> func.HttpResponse:
    """Delete the history of finished enrichments older than a number of days."""
    return await operations.purge_incidents(req, client)


@app.route(route="incidents/{instanceId}/rerun", methods=["POST"])
@app.durable_client_input(client_name="client")
async def rerun_incident(req: func.HttpRequest, client) -> func.HttpResponse:
    """Start a finished enrichment again from its stored input, under a new id."""
    return await operations.rerun_incident(req, client)


@app.route(route="incidents/{instanceId}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def get_incident_status(req: func.HttpRequest, client) -> func.HttpResponse:
    """Report an enrichment's runtime status, per-object progress and output."""
    iid = req.route_params.get("instanceId", "")
    # A ':' marks a sub-orchestration (one object); its parent has the status.
    if not iid.startswith("inc-") or len(iid) > 100 or ":" in iid:
        return _error(
            400,
            "invalid_instance_id",
            "instanceId",
            "expected an id returned by POST /api/incidents (inc-..., without "
            "the ':<object>' suffix of a sub-orchestration)",
        )
    status = await _status(client, iid, show_input=True)
    if status is None:
        return _error(404, "not_found", "instanceId", f"no enrichment with id {iid}")
    plan = status.input_ if isinstance(status.input_, dict) else {}
    objects = plan.get("objects") or []
    children = await asyncio.gather(
        *(_status(client, child_instance_id(iid, item["key"])) for item in objects)
    )
    progress = [
        object_progress(item, child)
        for item, child in zip(objects, children, strict=True)
    ]
    progress += [
        {
            "kind": s["kind"],
            "object": s["object"],
            "state": "skipped",
            "reason": s["reason"],
        }
        for s in plan.get("skipped") or []
    ]
    body = {
        "instanceId": iid,
        "runtimeStatus": status.runtime_status.value,
        "createdTime": status.created_time.isoformat() if status.created_time else None,
        "lastUpdatedTime": status.last_updated_time.isoformat()
        if status.last_updated_time
        else None,
        "incident": {
            k: (plan.get("incident") or {}).get(k) for k in ("id", "number", "title")
        },
        "stage": (status.custom_status or {}).get("stage")
        if isinstance(status.custom_status, dict)
        else None,
        "objects": progress,
        "output": status.output if status.runtime_status.value == "Completed" else None,
    }
    return _json(200, body)


@app.event_grid_trigger(arg_name="event")
@app.durable_client_input(client_name="client")
async def on_upload_blob_created(event: func.EventGridEvent, client) -> None:
    """Tell the waiting file analysis that its blob has arrived.

    Events that do not belong to a file analysis are logged and dropped, not
    raised: Event Grid would only deliver them again.
    """
    try:
        upload = parse_blob_event(
            event.event_type,
            event.subject,
            event.get_json(),
            current().upload_container,
        )
    except (InvalidUpload, SettingsError, ValueError) as exc:
        log.warning("upload.ignored event=%s reason=%s", event.id, exc)
        return
    try:
        await client.raise_event(upload["instance_id"], UPLOAD_EVENT, upload)
    except Exception as exc:  # noqa: BLE001 - the 1.x client raises plain Exception
        log.warning(
            "upload.orphan instance=%s blob=%s reason=%s",
            upload["instance_id"],
            upload["blob"],
            exc,
        )
        return
    log.info(
        "upload.received instance=%s size=%d", upload["instance_id"], upload["size"]
    )
