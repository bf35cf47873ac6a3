"""The Microsoft Defender for Endpoint API emulator (aiohttp app).

API routes, authenticated with ``Authorization: Bearer <token>``:

- ``GET /api/machines/{id}``, ``GET /api/machines?$filter=...``
- ``POST /api/advancedqueries/run``: a KQL subset on DeviceFileEvents
  (see hunting.py)
- ``GET|POST /api/libraryfiles``, ``DELETE /api/libraryfiles/{fileName}``
- ``POST /api/machines/{id}/runliveresponse``
- ``GET /api/machineactions/{id}``, ``GET /api/machineactions?$filter=...``
- ``POST /api/machineactions/{id}/cancel``
- ``GET /api/machineactions/{id}/GetLiveResponseResultDownloadLink(index=N)``
- ``GET|PATCH /api/alerts/{id}``

The download link points back at this emulator,
``/liveresponse-results/{actionId}/{index}?token=...``; that route needs no
bearer token, because the link carries its own, valid for 30 emulated minutes.

Extra control routes: ``POST /_emulator/devices/{id}`` with ``{"online":
bool}`` takes a device online or offline, ``POST /_emulator/devices/{id}/files``
adds a file to a device (see added_files.py), and ``GET /_emulator/uploads``
lists the upload attempts of RunScript commands.

Bearer tokens follow emulators.bearer. Besides the common fault kinds, this
emulator supports ``expire_token`` on every route that needs a bearer token.
"""

import asyncio
import logging
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from emulators.bearer import EXPIRED_CHALLENGE, BearerTokens, TokenState
from emulators.clock import EmulatedClock
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
from emulators.defender import odata, redaction, throttle
from emulators.defender.actions import MachineAction, defender_time
from emulators.defender.added_files import AddFileError, parse_new_file, read_body
from emulators.defender.catalogue import Catalogue
from emulators.defender.commands import (
    GET_FILE,
    PUT_FILE,
    RUN_SCRIPT,
    Command,
    parse_live_response,
)
from emulators.defender.devices import Device, FileConflictError
from emulators.defender.errors import DefenderError, DefenderErrorShape
from emulators.defender.hunting import run_query
from emulators.defender.library import Library, read_library_upload
from emulators.defender.sessions import Sessions
from emulators.defender.tenant import (
    AlertStore,
    added_file_row,
    file_event_rows,
    machine_entity,
)
from emulators.faults import CONTROL_PREFIX, FaultSwitch, claim_fault
from emulators.requestlog import RequestLog

log = logging.getLogger(__name__)

RESULTS_PREFIX = "/liveresponse-results/"
# The result download link is valid for 30 minutes (documented).
RESULT_LINK_SECONDS = 30 * 60.0
# Defender allows 25 concurrently running Live Response sessions.
# NOTE: queued (Pending) sessions count here. Whether Defender counts them,
# and the Retry-After it sends past the limit, are not documented.
MAX_SESSIONS = 25
SESSIONS_RETRY_AFTER_SECONDS = 60
_DOWNLOAD_FUNCTION = re.compile(
    r"^GetLiveResponseResultDownloadLink\(index=([0-9]{1,4})\)$"
)
MACHINE_FILTERS: dict[str, type] = {
    "id": str,
    "computerDnsName": str,
    "osPlatform": str,
    "healthStatus": str,
    "riskScore": str,
    "exposureLevel": str,
    "lastIpAddress": str,
    "aadDeviceId": str,
    "onboardingStatus": str,
    "rbacGroupId": int,
}
ACTION_FILTERS: dict[str, type] = {
    "id": str,
    "status": str,
    "machineId": str,
    "type": str,
    "requestor": str,
}


def _not_found(kind: str, name: str) -> DefenderError:
    return DefenderError(404, f"{kind} '{name}' was not found", "ResourceNotFound")


def base_url(request: web.Request) -> str:
    """Return this emulator's own loopback base URL, from the listening socket."""
    assert request.transport is not None
    host, port = request.transport.get_extra_info("sockname")[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _context(request: web.Request, name: str) -> str:
    return f"{base_url(request)}/api/$metadata#{name}"


@dataclass(frozen=True)
class _ResultLink:
    action_id: str
    index: int
    expires_at: float


class ResultLinks:
    """Tokens of the result download links, each valid for RESULT_LINK_SECONDS."""

    def __init__(self, clock: EmulatedClock) -> None:
        self._clock = clock
        self._links: dict[str, _ResultLink] = {}

    def clear(self) -> None:
        self._links.clear()

    def create(self, action_id: str, index: int) -> str:
        now = self._clock.now()
        self._links = {
            token: link for token, link in self._links.items() if link.expires_at > now
        }
        token = secrets.token_urlsafe(24)
        self._links[token] = _ResultLink(action_id, index, now + RESULT_LINK_SECONDS)
        return token

    def is_valid(self, token: str, action_id: str, index: int) -> bool:
        link = self._links.get(token)
        return (
            link is not None
            and link.action_id == action_id
            and link.index == index
            and link.expires_at > self._clock.now()
        )


class DefenderEmulator:
    """State and route handlers of the emulated Defender tenant."""

    def __init__(self, config: EmulatorConfig, clock: EmulatedClock) -> None:
        self.config = config
        self.clock = clock
        self.catalogue = Catalogue.load()

        if config.defender_data_dir is not None:
            self.data_dir = Path(config.defender_data_dir).resolve()
            self.data_dir.mkdir(exist_ok=True)
            self._owns_data_dir = False
        else:
            self.data_dir = Path(tempfile.mkdtemp(prefix="defender-emulator-"))
            self._owns_data_dir = True
        runs = self.data_dir / "runs"
        runs.mkdir(exist_ok=True)

        self.devices = {
            machine.id: Device(machine, self.data_dir / "devices", clock)
            for machine in self.catalogue.machines
        }
        for device in self.devices.values():
            device.materialise()

        self.library = Library(clock)
        self.sessions = Sessions(
            clock, self.library, runs, run_any_script=config.defender_run_any_script
        )
        self.alerts = AlertStore(clock, self.catalogue)
        self.file_events = file_event_rows(self.catalogue, clock)
        self.throttle = throttle.Throttle(clock)
        self.links = ResultLinks(clock)
        self.tokens = BearerTokens(config.bearer_token, clock)

        redaction.install_log_filter()
        log.info(
            "defender emulator: %d devices in %s", len(self.devices), self.data_dir
        )

    def reset(self) -> None:
        self.sessions.reset()
        self.library.clear()
        self.alerts.reset()
        self.throttle.clear()
        self.links.clear()
        self.tokens.clear()
        for device in self.devices.values():
            device.reset()
        self.file_events = file_event_rows(self.catalogue, self.clock)

    def state(self) -> dict[str, Any]:
        actions = []
        for action in self.sessions.newest_first():
            item = action.to_json("")
            del item["@odata.context"]
            actions.append(item)
        return {
            "dataFolder": str(self.data_dir),
            "machines": [
                {
                    "id": device.id,
                    "computerDnsName": device.machine.computer_dns_name,
                    "osPlatform": device.machine.os_platform,
                    "online": device.online,
                    "automationLevel": device.machine.automation_level,
                    "folder": str(device.folder),
                    "addedFiles": [
                        {
                            "path": file.path,
                            "location": file.location,
                            "sha256": file.sha256,
                            "size": file.size,
                        }
                        for file in device.added_files
                    ],
                }
                for device in self.devices.values()
            ],
            "actions": actions,
            "library": [file.to_json() for file in self.library.all()],
            "alerts": [
                {
                    "id": alert["id"],
                    "status": alert["status"],
                    "comments": alert["comments"],
                }
                for alert in self.alerts.alerts.values()
            ],
            "uploads": [attempt.to_json() for attempt in self.sessions.uploads],
        }

    async def on_shutdown(self, app: web.Application) -> None:
        self.sessions.kill_all()

    async def on_cleanup(self, app: web.Application) -> None:
        await self.sessions.close()
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # Authentication, throttling and error bodies

    async def authenticate(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        if is_control(request):
            return await handler(request)
        try:
            # A result download link carries its own token instead of a bearer token.
            if not request.path.startswith(RESULTS_PREFIX):
                self._bearer_token(request)
                self._check_throttle(request)
            return await handler(request)
        except DefenderError as exc:
            return exc.response()

    def _bearer_token(self, request: web.Request) -> str:
        """Return the request's bearer token, or raise a 401 unless it is valid."""
        check = self.tokens.check(request.headers.get("Authorization"))
        if check.state is TokenState.MISSING:
            raise DefenderError(
                401, "The 'Authorization' header is missing", "Unauthorized"
            )
        if check.state is TokenState.INVALID:
            raise DefenderError(
                401, "The access token is invalid or expired", "Unauthorized"
            )
        if check.state is TokenState.VALID and claim_fault(request, "expire_token"):
            assert check.token is not None
            check = self.tokens.expire(check.token)
            log.info(
                "a bearer token expired by an injected fault (%d expired tokens)",
                self.tokens.expired_count,
            )
        if check.state is TokenState.EXPIRED:
            raise DefenderError(
                401,
                "The access token has expired; get a new token and retry",
                "Unauthorized",
                headers={"WWW-Authenticate": EXPIRED_CHALLENGE},
            )
        assert check.token is not None
        return check.token

    def _check_throttle(self, request: web.Request) -> None:
        """Count the call against its API's budget and raise a 429 past the limit.

        Each API (route and method) has its own budget, as Defender documents
        the limits per API.
        """
        route = request.match_info.route.resource
        api = f"{request.method} {route.canonical if route else request.path}"
        if request.path.endswith("/runliveresponse"):
            limits = throttle.LIVE_RESPONSE
        elif request.path.startswith("/api/advancedqueries"):
            limits = throttle.ADVANCED_HUNTING
        else:
            limits = throttle.DEFAULT
        # Defender counts per application; every token of this emulator
        # belongs to the one app, so a renewed token keeps the budget.
        retry_after = self.throttle.acquire(self.config.bearer_token, api, limits)
        if retry_after is not None:
            log.info("throttled %s for %d s", api, retry_after)
            raise DefenderError(
                429,
                f"The call limit of {api} is reached; retry in {retry_after} seconds",
                "TooManyRequests",
                retry_after=retry_after,
            )

    # Machines and advanced hunting

    def _device(self, machine_id: str) -> Device:
        device = self.devices.get(machine_id.lower())
        if device is None:
            raise _not_found("Machine", machine_id)
        return device

    async def get_machine(self, request: web.Request) -> web.Response:
        device = self._device(request.match_info["machine_id"])
        entity = machine_entity(device, self.clock)
        return web.json_response(
            {"@odata.context": _context(request, "Machines/$entity"), **entity}
        )

    async def list_machines(self, request: web.Request) -> web.Response:
        query = odata.parse_query(request.query, MACHINE_FILTERS)
        entities = [
            machine_entity(device, self.clock) for device in self.devices.values()
        ]
        found = [item for item in entities if odata.matches(item, query.filters)]
        return web.json_response(
            {
                "@odata.context": _context(request, "Machines"),
                "value": query.page(found),
            }
        )

    async def run_hunting(self, request: web.Request) -> web.Response:
        body = await _read_body(request)
        if not isinstance(body, dict) or "Query" not in body:
            raise DefenderError(
                400,
                'Query is required: send {"Query": "<KQL>"} (case-sensitive)',
                "MissingRequiredParameter",
            )
        schema, results = run_query(body["Query"], self.file_events)
        log.debug("advanced hunting query returned %d rows", len(results))
        return web.json_response({"Schema": schema, "Results": results})

    # Live Response library

    async def list_library(self, request: web.Request) -> web.Response:
        files = [file.to_json() for file in self.library.all()]
        return web.json_response(
            {"@odata.context": _context(request, "LibraryFiles"), "value": files}
        )

    async def upload_library_file(self, request: web.Request) -> web.Response:
        upload = await read_library_upload(request)
        file = self.library.store(upload, defender_time(self.clock.utc()))
        log.info(
            "library file %s stored (%d bytes, SHA-256 %s)",
            file.file_name,
            len(file.content),
            file.sha256,
        )
        return web.json_response(
            {
                "@odata.context": _context(request, "LibraryFiles/$entity"),
                **file.to_json(),
            }
        )

    async def delete_library_file(self, request: web.Request) -> web.Response:
        name = request.match_info["file_name"]
        if not self.library.delete(name):
            raise _not_found("Library file", name)
        log.info("library file %s deleted", name)
        return web.Response(status=204)

    # Live Response

    async def run_live_response(self, request: web.Request) -> web.Response:
        device = self._device(request.match_info["machine_id"])
        parsed = parse_live_response(await _read_body(request))

        if device.machine.automation_level is None:
            raise DefenderError(
                403,
                f"Live response is not allowed on machine {device.id}: its device "
                "group has no automated remediation level. Assign one in the "
                "Defender settings.",
                "DisallowedOperation",
            )
        active = self.sessions.active_on(device.id)
        if active is not None:
            raise DefenderError(
                400,
                f"Machine {device.id} already has the active live response action "
                f"{active.id} ({active.status})",
                "ActiveRequestAlreadyExists",
            )

        if self.sessions.active_count() >= MAX_SESSIONS:
            raise DefenderError(
                429,
                f"{MAX_SESSIONS} live response sessions are active, the most "
                "allowed at once",
                "TooManyRequests",
                retry_after=SESSIONS_RETRY_AFTER_SECONDS,
            )
        self._check_library(parsed.commands)

        stored, args = _split_args(parsed.commands)
        action = MachineAction.create(
            self.clock,
            device.id,
            device.machine.computer_dns_name,
            stored,
            parsed.comment,
        )
        self.sessions.start(action, device, args)

        log.info(
            "live response action %s requested on device %s (%s): %s",
            action.id,
            device.id,
            "online" if device.online else "offline",
            ", ".join(_describe(command) for command in stored),
        )
        return web.json_response(
            action.to_json(_context(request, "MachineActions/$entity")), status=201
        )

    def _check_library(self, commands: tuple[Command, ...]) -> None:
        """Reject GetFile and commands that name a file missing from the library.

        NOTE: Defender rejects a RunScript of a script that is not in the
        library; the 400 BadRequest code and message here are guesses.
        """
        for index, command in enumerate(commands):
            if command.type == GET_FILE:
                raise DefenderError(
                    400,
                    f"Commands[{index}]: GetFile is not emulated; use PutFile and "
                    "RunScript",
                    "BadRequest",
                )
            key = "ScriptName" if command.type == RUN_SCRIPT else "FileName"
            name = command.param(key) or ""
            if self.library.get(name) is None:
                raise DefenderError(
                    400,
                    f"Commands[{index}]: the file '{name}' is not in the live "
                    "response library; upload it with POST /api/libraryfiles first",
                    "BadRequest",
                )

    def _action(self, action_id: str) -> MachineAction:
        action = self.sessions.get(action_id)
        if action is None:
            raise _not_found("Machine action", action_id)
        return action

    async def get_action(self, request: web.Request) -> web.Response:
        action = self._action(request.match_info["action_id"])
        return web.json_response(
            action.to_json(_context(request, "MachineActions/$entity"))
        )

    async def list_actions(self, request: web.Request) -> web.Response:
        query = odata.parse_query(request.query, ACTION_FILTERS)
        items = []
        for action in self.sessions.newest_first():
            item = action.to_json("")
            del item["@odata.context"]
            if odata.matches(item, query.filters):
                items.append(item)
        return web.json_response(
            {
                "@odata.context": _context(request, "MachineActions"),
                "value": query.page(items),
            }
        )

    async def cancel_action(self, request: web.Request) -> web.Response:
        action = self._action(request.match_info["action_id"])
        body = await _read_body(request)
        if not isinstance(body, dict) or set(body) - {"Comment"}:
            raise DefenderError(
                400,
                'The body must be {"Comment": "..."} (case-sensitive)',
                "InvalidRequestBody",
            )
        comment = body.get("Comment")
        if comment is not None and not isinstance(comment, str):
            raise DefenderError(400, "Comment must be a string", "InvalidRequestBody")
        if not action.is_active:
            # NOTE: the error for cancelling a finished action is not documented.
            raise DefenderError(
                400,
                f"Machine action {action.id} is already {action.status} and cannot "
                "be cancelled",
                "BadRequest",
            )
        self.sessions.cancel(action, comment)
        return web.json_response(
            action.to_json(_context(request, "MachineActions/$entity"))
        )

    async def result_download_link(self, request: web.Request) -> web.Response:
        action = self._action(request.match_info["action_id"])
        match = _DOWNLOAD_FUNCTION.match(request.match_info["function"])
        if match is None:
            raise _not_found("Resource", request.path)
        index = int(match.group(1))
        if index >= len(action.commands):
            raise DefenderError(
                400,
                f"Machine action {action.id} has no command with index {index}; it "
                f"has {len(action.commands)}",
                "BadRequest",
            )
        state = action.commands[index]
        if state.result is None:
            # NOTE: the error for a command without a result is not documented.
            reason = (
                "PutFile has no result"
                if state.command.type == PUT_FILE
                else f"the command is {state.status} and has no result"
            )
            raise DefenderError(
                400, f"Command {index} of action {action.id}: {reason}", "BadRequest"
            )
        token = self.links.create(action.id, index)
        link = f"{base_url(request)}{RESULTS_PREFIX}{action.id}/{index}?token={token}"
        return web.json_response(
            {"@odata.context": _context(request, "Edm.String"), "value": link}
        )

    async def download_result(self, request: web.Request) -> web.Response:
        action_id = request.match_info["action_id"].lower()
        try:
            index = int(request.match_info["index"])
        except ValueError:
            raise _not_found("Result", request.path) from None
        token = request.query.get("token", "")
        if not self.links.is_valid(token, action_id, index):
            raise DefenderError(
                403,
                "The download link is invalid or has expired; request a new one "
                "with GetLiveResponseResultDownloadLink",
                "AuthenticationFailed",
            )
        action = self._action(action_id)
        result = action.commands[index].result
        assert result is not None  # a link is made only for a command with a result
        return web.json_response(result.to_json())

    # Alerts

    def _alert(self, alert_id: str) -> dict[str, Any]:
        alert = self.alerts.get(alert_id)
        if alert is None:
            raise _not_found("Alert", alert_id)
        return alert

    async def get_alert(self, request: web.Request) -> web.Response:
        alert = self._alert(request.match_info["alert_id"])
        return web.json_response(
            {"@odata.context": _context(request, "Alerts/$entity"), **alert}
        )

    async def update_alert(self, request: web.Request) -> web.Response:
        alert = self._alert(request.match_info["alert_id"])
        self.alerts.update(alert, await _read_body(request))
        log.info("alert %s updated (%d comments)", alert["id"], len(alert["comments"]))
        return web.json_response(
            {"@odata.context": _context(request, "Alerts/$entity"), **alert}
        )

    # Control

    async def set_device(self, request: web.Request) -> web.Response:
        device = self.devices.get(request.match_info["machine_id"].lower())
        if device is None:
            return control_error(
                f"unknown machine {request.match_info['machine_id']}", 404
            )
        try:
            body = await read_json(request)
        except BodyError as exc:
            return control_error(str(exc))
        if (
            not isinstance(body, dict)
            or set(body) != {"online"}
            or not isinstance(body["online"], bool)
        ):
            return control_error(
                'the body must be {"online": true} or {"online": false}'
            )
        device.set_online(body["online"])
        return web.json_response({"id": device.id, "online": device.online})

    async def add_device_file(self, request: web.Request) -> web.Response:
        machine_id = request.match_info["machine_id"]
        device = self.devices.get(machine_id.lower())
        if device is None:
            return control_error(f"unknown machine {machine_id}", 404)
        try:
            raw = await read_body(request)
            new = await asyncio.to_thread(parse_new_file, raw, device.machine)
            device.add_file(new.file, new.content)
        except AddFileError as exc:
            return control_error(str(exc), exc.status)
        except FileConflictError as exc:
            return control_error(str(exc), 409)
        report_id = max((row["ReportId"] for row in self.file_events), default=0) + 1
        self.file_events.append(
            added_file_row(device.machine, new.file, self.clock, report_id)
        )
        return web.json_response(
            {
                "machineId": device.id,
                "path": new.file.path,
                "sha256": new.file.sha256,
                "size": new.file.size,
            },
            status=201,
        )

    async def list_uploads(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"uploads": [attempt.to_json() for attempt in self.sessions.uploads]}
        )


async def _read_body(request: web.Request) -> Any:
    try:
        return await read_json(request)
    except BodyError as exc:
        raise DefenderError(400, str(exc), "InvalidRequestBody") from None


def _split_args(
    commands: tuple[Command, ...],
) -> tuple[tuple[Command, ...], dict[int, str]]:
    """Return the commands with Args redacted, and the real Args by command index."""
    stored = []
    args = {}
    for index, command in enumerate(commands):
        value = command.param("Args")
        if value is None:
            stored.append(command)
            continue
        args[index] = value
        params = tuple(
            (key, redaction.ARGS_REDACTED if key == "Args" else item)
            for key, item in command.params
        )
        stored.append(Command(type=command.type, params=params))
    return tuple(stored), args


def _describe(command: Command) -> str:
    name = command.param("ScriptName") or command.param("FileName")
    return f"{command.type} {name}" if name else command.type


def _uses_bearer_token(request: web.Request) -> bool:
    """Return whether the route needs a bearer token; result links carry their own."""
    return not request.path.startswith(RESULTS_PREFIX)


DEFENDER = web.AppKey("defender", DefenderEmulator)


def build_app(config: EmulatorConfig, clock: EmulatedClock) -> web.Application:
    emulator = DefenderEmulator(config, clock)
    services = EmulatorServices(
        name="defender",
        clock=clock,
        shape=DefenderErrorShape(),
        state=emulator.state,
        reset=emulator.reset,
        request_log=RequestLog(),
        faults=FaultSwitch({"expire_token": _uses_bearer_token}),
    )
    app = new_app(services, auth=emulator.authenticate)
    app[DEFENDER] = emulator

    router = app.router
    router.add_get("/api/machines", emulator.list_machines)
    router.add_get("/api/machines/{machine_id}", emulator.get_machine)
    router.add_post(
        "/api/machines/{machine_id}/runliveresponse", emulator.run_live_response
    )
    router.add_post("/api/advancedqueries/run", emulator.run_hunting)

    router.add_get("/api/libraryfiles", emulator.list_library)
    router.add_post("/api/libraryfiles", emulator.upload_library_file)
    router.add_delete("/api/libraryfiles/{file_name}", emulator.delete_library_file)

    router.add_get("/api/machineactions", emulator.list_actions)
    router.add_get("/api/machineactions/{action_id}", emulator.get_action)
    router.add_post("/api/machineactions/{action_id}/cancel", emulator.cancel_action)
    router.add_get(
        "/api/machineactions/{action_id}/{function}", emulator.result_download_link
    )
    router.add_get(RESULTS_PREFIX + "{action_id}/{index}", emulator.download_result)

    router.add_get("/api/alerts/{alert_id}", emulator.get_alert)
    router.add_patch("/api/alerts/{alert_id}", emulator.update_alert)

    router.add_post(CONTROL_PREFIX + "devices/{machine_id}", emulator.set_device)
    router.add_post(
        CONTROL_PREFIX + "devices/{machine_id}/files", emulator.add_device_file
    )
    router.add_get(CONTROL_PREFIX + "uploads", emulator.list_uploads)

    app.on_shutdown.append(emulator.on_shutdown)
    app.on_cleanup.append(emulator.on_cleanup)
    return app
