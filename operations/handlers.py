"""The operator endpoints: list enrichments, rerun one, purge old ones.

function_app.py declares the routes and calls these coroutines with the
request and the durable client. Bad input gets 400 with
`{"error", "field", "message"}`. Responses never contain the function key, the
request's query string or any other secret.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func

from operations.params import (
    FINISHED_STATUSES,
    MAX_INSTANCE_ID_LENGTH,
    PARENT_PREFIX,
    TERMINAL_STATUSES,
    ParameterError,
    encode_cursor,
    parse_list_query,
    parse_parent_id,
    parse_purge_request,
)
from operations.taskhub import (
    QueryFilters,
    TaskHub,
    TaskHubError,
    rerun_base,
    rerun_number,
)
from settings import SettingsError, current

log = logging.getLogger("connector.operations")

ORCHESTRATOR = "enrich_incident"
MAX_BODY_BYTES = 64 * 1024
# Task hub pages one listing reads at most (SCAN_PAGE_SIZE entries each).
LIST_MAX_PAGES = 5
# Enrichments one purge request handles. Each costs one query and one purge
# request per instance. NOTE: 50 is an estimate meant to keep a request well
# under the 230-second limit of HTTP functions; it has not been timed in Azure.
MAX_PURGE_INCIDENTS = 50
PURGE_MAX_PAGES = 50


def json_response(
    status: int, body: Any, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body),
        status_code=status,
        mimetype="application/json",
        headers=headers,
    )


def error_response(
    status: int, code: str, field: str, message: str, **extra: Any
) -> func.HttpResponse:
    return json_response(
        status, {"error": code, "field": field, "message": message, **extra}
    )


def _parameter_error(exc: ParameterError) -> func.HttpResponse:
    return error_response(400, exc.code, exc.field, exc.message)


def _task_hub_error(action: str, exc: Exception) -> func.HttpResponse:
    log.error("operations.task_hub_failed action=%s error=%s", action, exc)
    return error_response(
        503,
        "task_hub_unavailable",
        "taskHub",
        f"{action} failed because the task hub query failed; retry later",
    )


def incidents_url(request_url: str) -> str:
    """Return the URL of `/api/incidents` from a request URL, without its query."""
    parts = urlsplit(request_url)
    path = parts.path
    end = path.find("/incidents")
    path = path[: end + len("/incidents")] if end >= 0 else path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}"


def _decoded(value: Any) -> Any:
    """Return a stored input as JSON data; some hosts hand it over as JSON text."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _summary(entry: dict[str, Any], base_url: str) -> dict[str, Any]:
    instance_id = str(entry["instanceId"])
    plan = _decoded(entry.get("input"))
    incident = plan.get("incident") if isinstance(plan, dict) else None
    incident = incident if isinstance(incident, dict) else {}
    original = rerun_base(instance_id)
    return {
        "instanceId": instance_id,
        "incident": {"number": incident.get("number"), "title": incident.get("title")},
        "runtimeStatus": entry.get("runtimeStatus"),
        "createdTime": entry.get("createdTime"),
        "lastUpdatedTime": entry.get("lastUpdatedTime"),
        "rerunOf": original if original != instance_id else None,
        "statusUri": f"{base_url}/{instance_id}",
    }


async def list_incidents(req: func.HttpRequest, client: Any) -> func.HttpResponse:
    """List enrichments, filtered by runtime status and creation time, page by page."""
    try:
        query = parse_list_query(req.params)
    except ParameterError as exc:
        return _parameter_error(exc)
    filters = QueryFilters(
        prefix=PARENT_PREFIX,
        statuses=query.statuses,
        created_from=query.created_after,
        created_to=query.created_before,
        show_input=True,
    )
    try:
        found, cursor = await TaskHub(client).scan_parents(
            filters,
            query.top,
            query.cursor,
            fingerprint=query.fingerprint(),
            max_pages=LIST_MAX_PAGES,
        )
    except TaskHubError as exc:
        return _task_hub_error("listing enrichments", exc)
    base_url = incidents_url(req.url)
    return json_response(
        200,
        {
            "incidents": [_summary(entry, base_url) for entry in found],
            "count": len(found),
            "continuationToken": encode_cursor(cursor) if cursor else None,
        },
    )


def _stored_plan(value: Any) -> dict[str, Any] | None:
    """Return the stored webhook plan if it has what a rerun needs, else None."""
    plan = _decoded(value)
    if (
        isinstance(plan, dict)
        and isinstance(plan.get("incident"), dict)
        and isinstance(plan.get("objects"), list)
    ):
        return plan
    return None


async def rerun_incident(req: func.HttpRequest, client: Any) -> func.HttpResponse:
    """Start a finished enrichment again, from its stored input, under a new id."""
    try:
        source_id = parse_parent_id(req.route_params.get("instanceId") or "")
    except ParameterError as exc:
        return _parameter_error(exc)
    try:
        hub = TaskHub(client)
        source = await hub.status(source_id, show_input=True)
        if source is None or (source.name and source.name != ORCHESTRATOR):
            return error_response(
                404, "not_found", "instanceId", f"no enrichment with id {source_id}"
            )
        runtime = source.runtime_status.value
        if runtime not in FINISHED_STATUSES:
            return error_response(
                409,
                "not_finished",
                "instanceId",
                f"{source_id} is {runtime}; only a Completed, Failed or Terminated "
                "enrichment can be rerun. Wait for it to end, or terminate it first",
                runtimeStatus=runtime,
            )
        plan = _stored_plan(source.input_)
        if plan is None:
            return error_response(
                409,
                "no_input",
                "instanceId",
                f"{source_id} has no stored enrichment input to start again from",
                runtimeStatus=runtime,
            )

        base = rerun_base(source_id)
        reruns = {}
        for entry in await hub.query_all(QueryFilters(prefix=f"{base}-r")):
            number = rerun_number(base, str(entry.get("instanceId")))
            if number is not None:
                reruns[number] = entry
        running = [
            entry
            for _, entry in sorted(reruns.items())
            if entry.get("runtimeStatus") not in TERMINAL_STATUSES
        ]
        if running:
            return error_response(
                409,
                "rerun_running",
                "instanceId",
                f"the rerun {running[0]['instanceId']} of {base} is "
                f"{running[0].get('runtimeStatus')}; wait for it to end",
                runtimeStatus=running[0].get("runtimeStatus"),
                rerunId=running[0]["instanceId"],
            )
        new_id = f"{base}-r{max(reruns, default=0) + 1}"
        if len(new_id) > MAX_INSTANCE_ID_LENGTH:
            return error_response(
                409,
                "id_too_long",
                "instanceId",
                f"the rerun id {new_id} would exceed {MAX_INSTANCE_ID_LENGTH} "
                "characters; purge older reruns of this enrichment first",
            )

        try:
            settings = current()
        except SettingsError as exc:
            log.error("incident.config_error error=%s", exc)
            return error_response(500, "configuration_error", "settings", str(exc))
        # Incident, objects, skipped objects and alerts come from the stored
        # input. The analysis options come from the current settings, so that a
        # setting fixed since the first run applies to the rerun.
        rerun_plan = {**plan, "options": settings.plan_options()}
        try:
            await hub.start(ORCHESTRATOR, new_id, rerun_plan)
        except Exception as exc:  # noqa: BLE001 - the 1.x client raises plain Exception
            again = await hub.status(new_id)
            if again is None:
                log.error("incident.rerun_failed instance=%s error=%s", new_id, exc)
                return error_response(
                    503,
                    "start_failed",
                    "instanceId",
                    f"could not start {new_id}; retry later",
                )
            return error_response(
                409,
                "rerun_running",
                "instanceId",
                f"the rerun {new_id} was started by another request and is "
                f"{again.runtime_status.value}",
                runtimeStatus=again.runtime_status.value,
                rerunId=new_id,
            )
    except TaskHubError as exc:
        return _task_hub_error("rerunning an enrichment", exc)

    log.info(
        "incident.rerun instance=%s source=%s objects=%d",
        new_id,
        source_id,
        len(plan.get("objects") or []),
    )
    status_uri = f"{incidents_url(req.url)}/{new_id}"
    return json_response(
        202,
        {
            "created": True,
            "id": new_id,
            "rerunOf": source_id,
            "statusUri": status_uri,
        },
        headers={"Location": status_uri, "Retry-After": "10"},
    )


def _read_body(req: func.HttpRequest) -> tuple[Any, func.HttpResponse | None]:
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    raw = req.get_body() or b""
    if not raw.strip():
        return None, None
    if content_type != "application/json":
        return None, error_response(
            415,
            "unsupported_media_type",
            "Content-Type",
            f"expected application/json, got {content_type or 'nothing'}",
        )
    if len(raw) > MAX_BODY_BYTES:
        return None, error_response(
            413,
            "payload_too_large",
            "$",
            f"the body is {len(raw)} bytes; at most {MAX_BODY_BYTES} are accepted",
        )
    try:
        return json.loads(raw.decode("utf-8")), None
    except (UnicodeDecodeError, ValueError) as exc:
        return None, error_response(
            400, "invalid_json", "$", f"the body is not valid JSON: {exc}"
        )
    except RecursionError:
        return None, error_response(
            400, "invalid_json", "$", "the body nests JSON values too deeply"
        )


async def _purge_one(hub: TaskHub, parent_id: str) -> tuple[int, str | None]:
    """Purge one enrichment and its sub-orchestrations.

    Returns the number of instances deleted, or 0 and the reason the
    enrichment was left alone.
    """
    children = await hub.query_all(QueryFilters(prefix=f"{parent_id}:"))
    running = [c for c in children if c.get("runtimeStatus") not in TERMINAL_STATUSES]
    if running:
        return 0, (
            f"{len(running)} sub-orchestration(s) still "
            f"{running[0].get('runtimeStatus')}; purge again when they end"
        )
    deleted = await hub.purge([str(child["instanceId"]) for child in children])
    return deleted + await hub.purge([parent_id]), None


async def purge_incidents(
    req: func.HttpRequest, client: Any, *, now: datetime | None = None
) -> func.HttpResponse:
    """Delete the history of finished enrichments created before a cutoff.

    `now` is for tests; the cutoff is `olderThanDays` days before it.
    """
    body, problem = _read_body(req)
    if problem:
        return problem
    try:
        request = parse_purge_request(body)
    except ParameterError as exc:
        return _parameter_error(exc)
    cutoff = (now or datetime.now(UTC)) - timedelta(days=request.older_than_days)
    filters = QueryFilters(
        prefix=PARENT_PREFIX, statuses=request.statuses, created_to=cutoff
    )
    purged, incidents, skipped = 0, 0, []
    try:
        hub = TaskHub(client)
        # Collect first, then purge, so that deleting cannot shift the pages
        # still to be read.
        parents, cursor = await hub.scan_parents(
            filters,
            MAX_PURGE_INCIDENTS,
            None,
            fingerprint="purge",
            max_pages=PURGE_MAX_PAGES,
        )
        for parent in parents:
            parent_id = str(parent["instanceId"])
            try:
                deleted, reason = await _purge_one(hub, parent_id)
            except Exception as exc:  # noqa: BLE001 - the 1.x client raises plain Exception
                log.warning(
                    "incidents.purge_failed instance=%s error=%s", parent_id, exc
                )
                deleted, reason = 0, f"purge failed: {exc}"
            if reason:
                skipped.append({"instanceId": parent_id, "reason": reason})
                continue
            purged += deleted
            incidents += 1
    except TaskHubError as exc:
        return _task_hub_error("purging enrichments", exc)

    log.info(
        "incidents.purged instances=%d incidents=%d skipped=%d created_before=%s",
        purged,
        incidents,
        len(skipped),
        cutoff.isoformat(),
    )
    return json_response(
        200,
        {
            "purged": purged,
            "incidents": incidents,
            "skipped": skipped,
            "createdBefore": cutoff.isoformat().replace("+00:00", "Z"),
            "statuses": list(request.statuses),
            "moreToPurge": cursor is not None,
        },
    )
