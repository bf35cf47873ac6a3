"""The ANY.RUN Sandbox API emulator (aiohttp app).

API routes, authenticated with ``Authorization: API-Key <key>``:

- ``POST /v1/analysis``: submit a URL (JSON body) or a file (multipart)
- ``GET /v1/analysis?team=&skip=&limit=``: task history, newest first
- ``GET /v1/analysis/monitor/{uuid}``: status events (text/event-stream)
- ``GET /v1/analysis/{uuid}``: the JSON report
- ``GET /report/{uuid}/ioc/json``: the IOC list
- ``GET /v1/user``: plan limits

Extra control route: ``POST /_emulator/limits`` with ``{"parallels": T,
"dailyQuota": D}`` (either may be left out; -1 means unlimited) changes the plan
limits until the next reset.
"""

import asyncio
import hmac
import json
import logging
import re
import uuid
from typing import Any

from aiohttp import web

from emulators.anyrun.catalogue import Catalogue
from emulators.anyrun.params import ParameterError, validate_submission
from emulators.anyrun.report import (
    build_iocs,
    build_report,
    history_item,
    monitor_event,
)
from emulators.anyrun.submission import read_submission
from emulators.anyrun.tasks import LimitError, Task, TaskStore
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
    FaultSwitch,
    claim_fault,
    reset_connection,
)
from emulators.requestlog import RequestLog

log = logging.getLogger(__name__)

AUTH_REQUIRED = "Authentication required to access this resource"
# "API-Key", "API-KEY", "api-key" ... followed by the key.
_API_KEY_HEADER = re.compile(r"^\s*api-key\s+(\S+)\s*$", re.IGNORECASE)
# Seconds of emulated time between monitor events, and the bounds in wall seconds.
MONITOR_EVENT_SECONDS = 10.0
MONITOR_MAX_WALL_INTERVAL = 0.5
MONITOR_MIN_WALL_INTERVAL = 0.01
MAX_HISTORY_LIMIT = 100

_FAULT_MESSAGES = {
    429: "Limits exceeded",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service temporarily unavailable",
}


def _api_error(message: str, status: int) -> web.Response:
    return web.json_response({"error": True, "message": message}, status=status)


class AnyrunErrorShape:
    """ANY.RUN error bodies: ``{"error": true, "message": ...}``."""

    def error(self, request: web.Request, status: int, message: str) -> dict[str, Any]:
        return {"error": True, "message": message}

    def fault(
        self, request: web.Request, status: int, retry_after: int | None
    ) -> dict[str, Any]:
        message = _FAULT_MESSAGES.get(status, f"Request failed with status {status}")
        return {"error": True, "message": message}


class AnyrunEmulator:
    """State and route handlers of one emulated ANY.RUN account with one API key."""

    def __init__(self, config: EmulatorConfig, clock: EmulatedClock) -> None:
        self.config = config
        self.clock = clock
        self.store = TaskStore(
            clock,
            Catalogue.load(),
            parallel_limit=config.parallel_limit,
            daily_quota=config.daily_quota,
        )
        self.closing = asyncio.Event()

    def reset(self) -> None:
        self.store.reset(
            parallel_limit=self.config.parallel_limit,
            daily_quota=self.config.daily_quota,
        )

    def state(self) -> dict[str, Any]:
        now = self.clock.now()
        return {
            "tasks": [self._task_state(task, now) for task in self.store.all()],
            "limits": {
                "parallels": self.store.parallel_limit,
                "dailyQuota": self.store.daily_quota,
                "running": self.store.running_count(now),
                "submissionsToday": self.store.submissions_today(now),
            },
        }

    @staticmethod
    def _task_state(task: Task, now: float) -> dict[str, Any]:
        if task.file is not None:
            obj: dict[str, Any] = {
                "type": "file",
                "filename": task.file.filename,
                "size": task.file.size,
                "sha256": task.file.sha256,
            }
        else:
            obj = {"type": task.obj_type, "url": task.obj_url}
        verdict = None
        if task.is_completed(now):
            verdict = {
                "threatLevel": task.profile.threat_level,
                "text": task.profile.verdict_text,
                "score": task.profile.score,
            }
        return {
            "uuid": task.uuid,
            "obj": obj,
            "tags": list(task.user_tags),
            "status": task.status(now),
            "verdict": verdict,
            "profileSource": task.profile.source,
            "created": iso_utc(task.created_utc),
            "duration": task.duration,
        }

    async def authenticate(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        if is_control(request):
            return await handler(request)
        match = _API_KEY_HEADER.match(request.headers.get("Authorization", ""))
        if match is None or not hmac.compare_digest(
            match.group(1).encode(), self.config.anyrun_api_key.encode()
        ):
            return _api_error(AUTH_REQUIRED, 401)
        return await handler(request)

    async def on_shutdown(self, app: web.Application) -> None:
        self.closing.set()

    def _find_task(self, request: web.Request) -> Task | None:
        try:
            task_uuid = str(uuid.UUID(request.match_info["uuid"]))
        except ValueError:
            return None
        return self.store.get(task_uuid)

    async def submit(self, request: web.Request) -> web.Response:
        try:
            raw, upload = await read_submission(request)
            submission = validate_submission(raw, has_file=upload is not None)
            if submission.rerun_uuid is not None:
                original = self.store.get(submission.rerun_uuid)
                if original is None:
                    raise ParameterError("task_rerun_uuid", "no task with this UUID")
                submission = validate_submission(
                    raw, has_file=False, base_options=original.options
                )
        except (BodyError, ParameterError) as exc:
            return _api_error(str(exc), 400)
        try:
            task = self.store.create(submission, upload)
        except LimitError as exc:
            log.info("rejected a submission: %s", exc)
            return _api_error(str(exc), 429)
        log.info(
            "created task %s (%s, %d s, verdict %r from %s)",
            task.uuid,
            task.obj_type,
            task.duration,
            task.profile.verdict_text,
            task.profile.source,
        )
        return web.json_response({"error": False, "data": {"taskid": task.uuid}})

    async def history(self, request: web.Request) -> web.Response:
        query = request.query
        team = query.get("team", "false")
        if team.lower() not in ("true", "false"):
            return _api_error(f"team: must be true or false, got {team!r}", 400)
        try:
            skip = int(query.get("skip", "0"))
            if skip < 0:
                raise ValueError
        except ValueError:
            return _api_error("skip: must be an integer of at least 0", 400)
        try:
            limit = int(query.get("limit", "25"))
            if not 1 <= limit <= MAX_HISTORY_LIMIT:
                raise ValueError
        except ValueError:
            return _api_error(
                f"limit: must be an integer from 1 to {MAX_HISTORY_LIMIT}", 400
            )
        now = self.clock.now()
        tasks = [history_item(task, now) for task in self.store.history(skip, limit)]
        return web.json_response({"error": False, "data": {"tasks": tasks}})

    async def report(self, request: web.Request) -> web.Response:
        task = self._find_task(request)
        if task is None:
            return _api_error("Task not found", 404)
        now = self.clock.now()
        if task.is_failed(now):
            return _api_error("No content", 422)
        return web.json_response(build_report(task, now))

    async def iocs(self, request: web.Request) -> web.Response:
        task = self._find_task(request)
        if task is None:
            return _api_error("Task not found", 404)
        now = self.clock.now()
        if task.is_failed(now):
            return _api_error("No content", 422)
        # NOTE: a running task returns an empty list; whether the real API returns
        # partial IOCs while a task runs is not documented.
        return web.json_response(build_iocs(task) if task.is_completed(now) else [])

    async def user(self, request: web.Request) -> web.Response:
        now = self.clock.now()
        unlimited = {"minute": -1, "hour": -1, "day": -1, "month": -1}
        # NOTE: api.day is the configured quota, not what is left of it; which of
        # the two the real API reports is not documented.
        limits = {
            "web": dict(unlimited),
            "api": {**unlimited, "day": self.store.daily_quota},
            "parallels": {
                "total": self.store.parallel_limit,
                "available": self.store.available_parallels(now),
            },
        }
        return web.json_response({"error": False, "data": {"limits": limits}})

    async def monitor(self, request: web.Request) -> web.StreamResponse:
        """Stream status events until the task completes or fails, then close.

        Events come every 10 emulated seconds, but at least every 0.5 wall seconds,
        and right when the task ends. A client may close the stream at any time.
        A ``cut_stream`` fault resets the connection after its ``events`` events,
        or after the last event if the task ends first, so the chunked body
        never ends.
        """
        task = self._find_task(request)
        if task is None:
            return _api_error("Task not found", 404)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
            }
        )
        await response.prepare(request)
        interval = min(
            self.clock.wall_seconds(MONITOR_EVENT_SECONDS), MONITOR_MAX_WALL_INTERVAL
        )
        interval = max(interval, MONITOR_MIN_WALL_INTERVAL)
        cut = claim_fault(request, "cut_stream")
        # The number of events to send before the cut; None streams to the end.
        cut_after = None if cut is None else (cut.events or 0)
        sent = 0
        try:
            while cut_after is None or sent < cut_after:
                now = self.clock.now()
                event = monitor_event(task, now)
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
                sent += 1
                if task.is_finished(now) or sent == cut_after:
                    break
                until_end = self.clock.wall_seconds(
                    task.created_at + task.end_seconds - now
                )
                try:
                    await asyncio.wait_for(
                        self.closing.wait(), timeout=max(0.0, min(interval, until_end))
                    )
                    break
                except TimeoutError:
                    pass
            if cut is not None:
                log.info(
                    "cutting the monitor stream of task %s after %d events",
                    task.uuid,
                    sent,
                )
                reset_connection(request)
                return response
            await response.write_eof()
        except ConnectionResetError:
            log.debug("monitor client of task %s closed the stream", task.uuid)
        return response

    async def set_limits(self, request: web.Request) -> web.Response:
        try:
            body = await read_json(request)
        except BodyError as exc:
            return control_error(str(exc))
        if not isinstance(body, dict) or set(body) - {"parallels", "dailyQuota"}:
            return control_error(
                'the body must be {"parallels": T, "dailyQuota": D} (both optional)'
            )
        for name, value in body.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < -1:
                return control_error(f"{name} must be an integer of at least -1")
        self.store.parallel_limit = body.get("parallels", self.store.parallel_limit)
        self.store.daily_quota = body.get("dailyQuota", self.store.daily_quota)
        log.info(
            "limits set: %d parallel, %d a day",
            self.store.parallel_limit,
            self.store.daily_quota,
        )
        return web.json_response(self.state()["limits"])


ANYRUN = web.AppKey("anyrun", AnyrunEmulator)


def build_app(config: EmulatorConfig, clock: EmulatedClock) -> web.Application:
    emulator = AnyrunEmulator(config, clock)
    services = EmulatorServices(
        name="anyrun",
        clock=clock,
        shape=AnyrunErrorShape(),
        state=emulator.state,
        reset=emulator.reset,
        request_log=RequestLog(),
        faults=FaultSwitch(),
    )
    app = new_app(services, auth=emulator.authenticate)
    app[ANYRUN] = emulator
    app.router.add_post("/v1/analysis", emulator.submit)
    app.router.add_get("/v1/analysis", emulator.history)
    app.router.add_get("/v1/analysis/monitor/{uuid}", emulator.monitor)
    app.router.add_get("/v1/analysis/{uuid}", emulator.report)
    app.router.add_get("/report/{uuid}/ioc/json", emulator.iocs)
    app.router.add_get("/v1/user", emulator.user)
    app.router.add_post(CONTROL_PREFIX + "limits", emulator.set_limits)
    app.on_shutdown.append(emulator.on_shutdown)
    return app
