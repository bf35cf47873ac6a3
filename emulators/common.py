"""Pieces every emulator app shares: middlewares and the /_emulator/ control routes.

Control routes (no auth, loopback peers only, never part of an emulated API):

- ``GET /_emulator/health``: ``{"emulator": name, "speed": N, "now": emulated UTC}``
- ``GET /_emulator/requests``: ``{"requests": [{method, path, status, time}]}``,
  with status 0 for a request whose connection an injected fault reset
- ``GET /_emulator/state``: the emulator's state, shaped by each emulator
- ``POST /_emulator/reset``: back to the start state, with an empty request log,
  no fault rules and the counts of injected faults at 0
- ``GET|POST|DELETE /_emulator/faults``: list, add (a rule or a list of rules,
  see emulators.faults) or remove all fault rules
- ``GET /_emulator/faults/stats``: ``{"injected": {kind: count}}``, the faults
  injected since the start or the last reset, by kind

Control requests are not written to the request log.
"""

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from emulators.clock import EmulatedClock, iso_utc
from emulators.config import is_loopback_peer
from emulators.fault_rules import FaultRuleError, parse_rules
from emulators.faults import (
    CONTROL_PREFIX,
    RESET_STATUS,
    FaultSwitch,
    apply_fault,
    was_reset,
)
from emulators.requestlog import RequestLog

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ErrorShape(Protocol):
    """The error bodies of one emulated API."""

    def error(
        self, request: web.Request, status: int, message: str
    ) -> dict[str, Any]: ...

    def fault(
        self, request: web.Request, status: int, retry_after: int | None
    ) -> dict[str, Any]: ...


@dataclass
class EmulatorServices:
    """Services of one emulator that the shared middlewares and control routes use."""

    name: str
    clock: EmulatedClock
    shape: ErrorShape
    state: Callable[[], dict[str, Any]]
    reset: Callable[[], None]
    request_log: RequestLog
    faults: FaultSwitch


SERVICES = web.AppKey("services", EmulatorServices)


class BodyError(ValueError):
    """The request body is not the JSON the route expects."""


async def read_json(request: web.Request) -> Any:
    text = await request.text()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BodyError(f"the request body is not valid JSON: {exc}") from None


def is_control(request: web.Request) -> bool:
    return request.path.startswith(CONTROL_PREFIX)


@web.middleware
async def log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    if is_control(request):
        return await handler(request)
    request_log = request.app[SERVICES].request_log
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        request_log.record(request.method, request.path, exc.status)
        raise
    except BaseException:
        request_log.record(request.method, request.path, 500)
        raise
    if was_reset(request):
        request_log.record(request.method, request.path, RESET_STATUS)
        return response
    request_log.record(request.method, request.path, response.status)
    if response.status >= 400:
        log.info(
            "%s %s %s -> %d",
            request.app[SERVICES].name,
            request.method,
            request.path,
            response.status,
        )
    return response


@web.middleware
async def shape_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's plain-text errors and unexpected exceptions into API errors."""
    shape = request.app[SERVICES].shape
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {
            404: f"The resource '{request.path}' was not found",
            405: f"The method {request.method} is not allowed on '{request.path}'",
            413: "The request body is too large",
        }.get(exc.status, exc.reason)
        return web.json_response(
            shape.error(request, exc.status, message), status=exc.status
        )
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return web.json_response(
            shape.error(request, 500, "Internal server error"), status=500
        )


@web.middleware
async def guard_control_routes(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    if is_control(request) and not is_loopback_peer(request.remote):
        return web.json_response(
            {"message": "control routes accept loopback clients only"}, status=403
        )
    return await handler(request)


@web.middleware
async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    if is_control(request):
        return await handler(request)
    services = request.app[SERVICES]
    rule = services.faults.take(request)
    if rule is None:
        return await handler(request)
    return await apply_fault(rule, request, handler, services.shape.fault)


def new_app(
    services: EmulatorServices,
    *,
    auth: Callable[[web.Request, Handler], Awaitable[web.StreamResponse]],
    client_max_size: int = 1024**2,
) -> web.Application:
    """Create an app with the shared middlewares, ``auth`` and the control routes.

    The auth middleware runs innermost, after faults, and must let control routes pass.
    """

    @web.middleware
    async def authenticate(
        request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        return await auth(request, handler)

    app = web.Application(
        middlewares=[
            log_requests,
            shape_errors,
            guard_control_routes,
            inject_faults,
            authenticate,
        ],
        client_max_size=client_max_size,
    )
    app[SERVICES] = services
    app.router.add_get(CONTROL_PREFIX + "health", _health)
    app.router.add_get(CONTROL_PREFIX + "requests", _requests)
    app.router.add_get(CONTROL_PREFIX + "state", _state)
    app.router.add_post(CONTROL_PREFIX + "reset", _reset)
    app.router.add_get(CONTROL_PREFIX + "faults", _list_faults)
    app.router.add_post(CONTROL_PREFIX + "faults", _add_faults)
    app.router.add_delete(CONTROL_PREFIX + "faults", _clear_faults)
    app.router.add_get(CONTROL_PREFIX + "faults/stats", _fault_stats)
    return app


def control_error(message: str, status: int = 400) -> web.Response:
    return web.json_response({"message": message}, status=status)


async def _health(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    return web.json_response(
        {
            "emulator": services.name,
            "speed": services.clock.speed,
            "now": iso_utc(services.clock.utc(), digits=6),
        }
    )


async def _requests(request: web.Request) -> web.Response:
    return web.json_response({"requests": request.app[SERVICES].request_log.entries()})


async def _state(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVICES].state())


async def _reset(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    services.reset()
    services.faults.reset()
    services.request_log.clear()
    log.info("%s emulator reset", services.name)
    return web.json_response({"reset": True})


async def _list_faults(request: web.Request) -> web.Response:
    rules = request.app[SERVICES].faults.rules()
    return web.json_response({"faults": [rule.to_json() for rule in rules]})


async def _add_faults(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    try:
        rules = parse_rules(
            await read_json(request),
            kinds=services.faults.kinds,
            emulator=services.name,
        )
    except (BodyError, FaultRuleError) as exc:
        return control_error(str(exc))
    services.faults.add(rules)
    log.info("%s emulator: added %d fault rules", services.name, len(rules))
    return web.json_response(
        {"faults": [rule.to_json() for rule in services.faults.rules()]}
    )


async def _clear_faults(request: web.Request) -> web.Response:
    request.app[SERVICES].faults.clear()
    return web.json_response({"faults": []})


async def _fault_stats(request: web.Request) -> web.Response:
    return web.json_response({"injected": request.app[SERVICES].faults.stats()})
