"""The Microsoft Sentinel emulator (aiohttp app): ARM incident routes and TI upload.

API routes, authenticated with ``Authorization: Bearer <token>``; the ARM ones
need an ``api-version`` query parameter:

- ``GET|PUT {incidentId}``: read or update an incident (etag concurrency)
- ``GET {incidentId}/comments``, ``GET|PUT {incidentId}/comments/{commentId}``
- ``POST {incidentId}/entities``, ``POST {incidentId}/alerts``: what the seeded
  trigger body listed
- ``POST /workspaces/{workspaceId}/threat-intelligence-stix-objects:upload``

``{incidentId}`` is ``/subscriptions/.../providers/Microsoft.SecurityInsights/
incidents/{id}``, matched case-insensitively. Extra control route:
``POST /_emulator/incidents`` with a trigger body adds or replaces an incident.

Bearer tokens follow emulators.bearer. Besides the common fault kinds, this
emulator supports ``expire_token`` and, on the TI upload route, ``partial``.
"""

import logging
import re
from collections import Counter
from datetime import datetime
from typing import Any

from aiohttp import web

from emulators.bearer import (
    EXPIRED_CHALLENGE,
    BearerTokens,
    TokenCheck,
    TokenState,
)
from emulators.clock import EmulatedClock, iso_utc
from emulators.common import (
    BodyError,
    EmulatorServices,
    Handler,
    control_error,
    is_control,
    new_app,
    read_json,
)
from emulators.config import EmulatorConfig
from emulators.faults import (
    CONTROL_PREFIX,
    FaultRule,
    FaultSwitch,
    choose_failed_records,
    claim_fault,
)
from emulators.requestlog import RequestLog
from emulators.sentinel.incidents import (
    INCIDENT_ID,
    MAX_COMMENTS,
    CommentLimitError,
    FieldError,
    Incident,
    IncidentStore,
    TriggerError,
    load_trigger_files,
    new_etag,
    same_etag,
    validate_comment_put,
    validate_incident_put,
)
from emulators.sentinel.ti import API_VERSION as TI_API_VERSION
from emulators.sentinel.ti import (
    MAX_OBJECTS,
    RESTRICTED_SOURCE,
    RateLimiter,
    StixStore,
    validate_stix_object,
)

log = logging.getLogger(__name__)

TI_PATH = re.compile(
    r"^/workspaces/(?P<workspace>[^/]+)/threat-intelligence-stix-objects:upload/?$",
    re.IGNORECASE,
)
_ARM_PATH = re.compile(
    rf"^(?P<incident>{INCIDENT_ID})"
    r"(?:/(?P<collection>comments|entities|alerts)(?:/(?P<item>[^/]+))?)?/?$",
    re.IGNORECASE,
)
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")

ERROR_CODES = {
    400: "BadRequest",
    401: "AuthenticationFailed",
    403: "AuthorizationFailed",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
}
_FAULT_MESSAGES = {
    429: "The request was throttled. Retry after the time in Retry-After.",
    500: "An internal server error occurred.",
    502: "The gateway did not receive a response in time.",
    503: "The service is temporarily unavailable.",
}
# The message of a record that a partial fault fails, worded like a transient
# server-side failure so that a client retries it.
PARTIAL_FAILURE_MESSAGE = "Internal error while saving the object; retry the upload"
COMMENT_AUTHOR = {
    "objectId": "00000000-0000-0000-0000-00000000c0de",
    "email": None,
    "name": "Emulated API client",
    "userPrincipalName": None,
}


def arm_error(status: int, message: str, code: str | None = None) -> web.Response:
    body = {
        "error": {"code": code or ERROR_CODES.get(status, "Error"), "message": message}
    }
    return web.json_response(body, status=status)


def ti_throttled(retry_after: int) -> web.Response:
    return web.json_response(
        {
            "statusCode": 429,
            "message": f"Rate limit is exceeded. Try again in {retry_after} seconds.",
        },
        status=429,
        headers={"Retry-After": str(retry_after)},
    )


class SentinelErrorShape:
    """ARM error bodies, and the TI API's own 429 body on the upload path."""

    def error(self, request: web.Request, status: int, message: str) -> dict[str, Any]:
        return {"error": {"code": ERROR_CODES.get(status, "Error"), "message": message}}

    def fault(
        self, request: web.Request, status: int, retry_after: int | None
    ) -> dict[str, Any]:
        if status == 429 and TI_PATH.match(request.path):
            seconds = 60 if retry_after is None else retry_after
            return {
                "statusCode": 429,
                "message": f"Rate limit is exceeded. Try again in {seconds} seconds.",
            }
        message = _FAULT_MESSAGES.get(status, f"Request failed with status {status}.")
        return self.error(request, status, message)


class SentinelEmulator:
    """State and route handlers of the emulated Sentinel workspaces."""

    def __init__(self, config: EmulatorConfig, clock: EmulatedClock) -> None:
        self.config = config
        self.clock = clock
        seed = (
            load_trigger_files(config.incidents_dir)
            if config.incidents_dir is not None
            else []
        )
        self.incidents = IncidentStore(seed)
        self.stix = StixStore()
        self.rate_limiter = RateLimiter(clock, config.ti_rate_limit)
        self.tokens = BearerTokens(config.bearer_token, clock)
        log.info("sentinel emulator seeded with %d incidents", len(seed))

    def reset(self) -> None:
        self.incidents.reset()
        self.stix.clear()
        self.rate_limiter.clear()
        self.tokens.clear()

    def state(self) -> dict[str, Any]:
        incidents = []
        for incident in self.incidents.all():
            properties = incident.properties
            incidents.append(
                {
                    "id": incident.arm_id,
                    "name": incident.name,
                    "etag": incident.etag,
                    "workspaceId": incident.workspace_id,
                    "title": properties.get("title"),
                    "severity": properties.get("severity"),
                    "status": properties.get("status"),
                    "labels": properties.get("labels", []),
                    "comments": [
                        {"name": comment["name"], **comment["properties"]}
                        for comment in incident.comments.values()
                    ],
                }
            )
        return {
            "incidents": incidents,
            "workspaces": sorted(self.incidents.workspace_ids()),
            **self.stix.state(),
        }

    async def authenticate(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        if is_control(request):
            return await handler(request)
        check = self.tokens.check(request.headers.get("Authorization"))
        if check.state is TokenState.MISSING:
            return arm_error(
                401, "Authentication failed. The 'Authorization' header is missing."
            )
        if check.state is TokenState.INVALID:
            return arm_error(
                401, "Authentication failed. The access token is invalid or expired."
            )
        if check.state is TokenState.VALID and claim_fault(request, "expire_token"):
            assert check.token is not None
            check = self.tokens.expire(check.token)
            log.info(
                "a bearer token expired by an injected fault (%d expired tokens)",
                self.tokens.expired_count,
            )
        if check.state is TokenState.EXPIRED:
            return self._expired_token(check)
        return await handler(request)

    def _expired_token(self, check: TokenCheck) -> web.Response:
        """Return ARM's 401 for an expired token, with the invalid_token challenge."""
        assert check.expired_at is not None
        response = arm_error(
            401,
            f"The access token expiry UTC time '{_arm_time(check.expired_at)}' is "
            f"earlier than current UTC time '{_arm_time(self.clock.utc())}'.",
            "ExpiredAuthenticationToken",
        )
        response.headers["WWW-Authenticate"] = EXPIRED_CHALLENGE
        return response

    # ARM routes

    async def arm(self, request: web.Request) -> web.Response:
        match = _ARM_PATH.match(request.path)
        if match is None:
            return arm_error(404, f"The resource '{request.path}' was not found.")
        version_error = _check_api_version(request)
        if version_error is not None:
            return version_error
        incident = self.incidents.get(match["incident"])
        if incident is None:
            return arm_error(
                404, f"Incident '{match['incident'].rsplit('/', 1)[-1]}' was not found."
            )

        collection = (match["collection"] or "").lower()
        item = match["item"]
        route = (request.method, collection, item is not None)
        if route == ("GET", "", False):
            return web.json_response(incident.resource())
        if route == ("PUT", "", False):
            return await self._put_incident(request, incident)

        if route == ("GET", "comments", False):
            return web.json_response(
                {"value": [dict(c) for c in incident.comments.values()]}
            )
        if route == ("GET", "comments", True):
            comment = incident.comments.get(item.lower())
            if comment is None:
                return arm_error(404, f"Comment '{item}' was not found.")
            return web.json_response(comment)
        if route == ("PUT", "comments", True):
            return await self._put_comment(request, incident, item)

        if route == ("POST", "entities", False):
            return web.json_response(_entities_body(incident))
        if route == ("POST", "alerts", False):
            return web.json_response({"value": incident.alerts})
        return arm_error(
            405, f"The method {request.method} is not allowed on '{request.path}'."
        )

    async def _put_incident(
        self, request: web.Request, incident: Incident
    ) -> web.Response:
        try:
            body = await read_json(request)
            updates = validate_incident_put(body)
        except BodyError as exc:
            return arm_error(400, str(exc), "InvalidRequestContent")
        except FieldError as exc:
            return arm_error(400, str(exc))
        sent_etag = body.get("etag")
        if sent_etag is not None and not isinstance(sent_etag, str):
            return arm_error(400, "etag: must be a string")
        # NOTE: a PUT without an etag overwrites unconditionally, as ARM optimistic
        # concurrency usually works; this is not confirmed for Sentinel incidents.
        if sent_etag is not None and not same_etag(sent_etag, incident.etag):
            log.info("409 on incident %s: stale etag", incident.name)
            return arm_error(
                409,
                f"New version of resource '{incident.arm_id}' exists. "
                "Data was not saved",
            )
        # NOTE: writable properties left out of the body keep their values; whether
        # Sentinel clears them instead is not documented.
        incident.properties.update(updates)
        incident.properties["lastModifiedTimeUtc"] = iso_utc(self.clock.utc(), digits=7)
        incident.etag = new_etag()
        return web.json_response(incident.resource())

    async def _put_comment(
        self, request: web.Request, incident: Incident, comment_id: str
    ) -> web.Response:
        try:
            message = validate_comment_put(await read_json(request))
        except BodyError as exc:
            return arm_error(400, str(exc), "InvalidRequestContent")
        except (FieldError, CommentLimitError) as exc:
            return arm_error(400, str(exc))
        key = comment_id.lower()
        existing = incident.comments.get(key)
        if existing is None and len(incident.comments) >= MAX_COMMENTS:
            return arm_error(
                400,
                f"Incident '{incident.name}' already has the maximum of "
                f"{MAX_COMMENTS} comments",
            )
        now = iso_utc(self.clock.utc(), digits=7)
        if existing is not None:
            existing["properties"]["message"] = message
            existing["properties"]["lastModifiedTimeUtc"] = now
            existing["etag"] = new_etag()
            return web.json_response(existing, status=200)
        comment = {
            "id": f"{incident.arm_id}/comments/{comment_id}",
            "name": comment_id,
            "etag": new_etag(),
            "type": "Microsoft.SecurityInsights/Incidents/Comments",
            "properties": {
                "message": message,
                "createdTimeUtc": now,
                "lastModifiedTimeUtc": now,
                "author": dict(COMMENT_AUTHOR),
            },
        }
        incident.comments[key] = comment
        return web.json_response(comment, status=201)

    # Threat-intelligence upload

    async def upload_stix(self, request: web.Request) -> web.Response:
        match = TI_PATH.match(request.path)
        if match is None:
            return arm_error(404, f"The resource '{request.path}' was not found.")

        # The limit is per application: a renewed token keeps the budget.
        retry_after = self.rate_limiter.acquire(self.config.bearer_token)
        if retry_after is not None:
            log.info("TI upload throttled for %d s", retry_after)
            return ti_throttled(retry_after)

        version = request.query.get("api-version")
        if version != TI_API_VERSION:
            return arm_error(
                400,
                f"api-version must be {TI_API_VERSION}, got {version!r}",
                "MissingApiVersionParameter"
                if version is None
                else "InvalidApiVersionParameter",
            )
        workspace_id = match["workspace"]
        if workspace_id.lower() not in self.incidents.workspace_ids():
            return arm_error(404, f"Workspace '{workspace_id}' was not found.")
        try:
            body = await read_json(request)
        except BodyError as exc:
            return arm_error(400, str(exc))
        problem = _check_upload_body(body)
        if problem is not None:
            return arm_error(400, problem)

        errors = self._store_objects(
            workspace_id, body, claim_fault(request, "partial")
        )
        if errors:
            return web.json_response({"errors": errors})
        # NOTE: a fully valid upload returns 200 with an empty body; whether the
        # real API sends an empty body or {"errors": []} is not documented.
        return web.Response(status=200)

    def _store_objects(
        self, workspace_id: str, body: dict[str, Any], partial: FaultRule | None
    ) -> list[dict[str, Any]]:
        """Upsert the valid objects of an upload and return the partial errors.

        With a ``partial`` fault rule, some valid objects get a transient error
        instead and are not stored.
        """
        objects = body["stixobjects"]
        problems = {i: validate_stix_object(obj) for i, obj in enumerate(objects)}
        valid = [index for index, messages in problems.items() if not messages]
        failed = choose_failed_records(partial, valid) if partial else set()
        errors = []
        stored = created = 0
        for index, obj in enumerate(objects):
            if problems[index]:
                errors.append({"recordIndex": index, "errorMessages": problems[index]})
            elif index in failed:
                errors.append(
                    {"recordIndex": index, "errorMessages": [PARTIAL_FAILURE_MESSAGE]}
                )
            else:
                stored += 1
                created += self.stix.upsert(workspace_id, obj, body["sourcesystem"])
        log.info(
            "TI upload to workspace %s: %d stored (%d new), %d invalid, %d failed "
            "by an injected fault",
            workspace_id,
            stored,
            created,
            len(errors) - len(failed),
            len(failed),
        )
        return errors

    # Control

    async def add_incident(self, request: web.Request) -> web.Response:
        try:
            incident, created = self.incidents.add(await read_json(request))
        except (BodyError, TriggerError) as exc:
            return control_error(str(exc))
        log.info("incident %s %s", incident.name, "added" if created else "replaced")
        return web.json_response(
            {"id": incident.arm_id, "etag": incident.etag, "created": created},
            status=201 if created else 200,
        )


def _arm_time(moment: datetime) -> str:
    """Format ``moment`` as ARM's token errors do, such as 3/19/2023 8:55:46 AM."""
    hour = moment.hour % 12 or 12
    half = "AM" if moment.hour < 12 else "PM"
    return (
        f"{moment.month}/{moment.day}/{moment.year} "
        f"{hour}:{moment.minute:02d}:{moment.second:02d} {half}"
    )


def _is_ti_upload(request: web.Request) -> bool:
    return request.method == "POST" and TI_PATH.match(request.path) is not None


def _check_api_version(request: web.Request) -> web.Response | None:
    version = request.query.get("api-version")
    if version is None:
        return arm_error(
            400,
            "The api-version query parameter (?api-version=) is required for all "
            "requests.",
            "MissingApiVersionParameter",
        )
    if not _API_VERSION.match(version):
        return arm_error(
            400,
            f"The api-version '{version}' is invalid. "
            "Use a version such as 2025-09-01.",
            "InvalidApiVersionParameter",
        )
    return None


def _check_upload_body(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object"
    source = body.get("sourcesystem")
    if not isinstance(source, str) or not source.strip():
        return "sourcesystem: required, a non-empty string"
    if source.strip().lower() == RESTRICTED_SOURCE.lower():
        return f"sourcesystem: the value '{RESTRICTED_SOURCE}' is restricted"
    objects = body.get("stixobjects")
    if not isinstance(objects, list):
        return "stixobjects: required, an array of STIX objects"
    if not 1 <= len(objects) <= MAX_OBJECTS:
        return (
            f"stixobjects: must contain 1 to {MAX_OBJECTS} objects, got {len(objects)}"
        )
    return None


def _entities_body(incident: Incident) -> dict[str, Any]:
    kinds = Counter(
        entity.get("kind", "Unknown")
        for entity in incident.entities
        if isinstance(entity, dict)
    )
    return {
        "entities": incident.entities,
        "metaData": [{"entityKind": kind, "count": n} for kind, n in kinds.items()],
    }


SENTINEL = web.AppKey("sentinel", SentinelEmulator)


def build_app(config: EmulatorConfig, clock: EmulatedClock) -> web.Application:
    emulator = SentinelEmulator(config, clock)
    services = EmulatorServices(
        name="sentinel",
        clock=clock,
        shape=SentinelErrorShape(),
        state=emulator.state,
        reset=emulator.reset,
        request_log=RequestLog(),
        faults=FaultSwitch({"expire_token": None, "partial": _is_ti_upload}),
    )
    app = new_app(services, auth=emulator.authenticate, client_max_size=8 * 1024**2)
    app[SENTINEL] = emulator
    for method in ("GET", "PUT", "POST"):
        app.router.add_route(method, "/subscriptions/{tail:.+}", emulator.arm)
    app.router.add_post("/workspaces/{tail:.+}", emulator.upload_stix)
    app.router.add_post(CONTROL_PREFIX + "incidents", emulator.add_incident)
    return app
