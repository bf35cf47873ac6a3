"""HTTP front of devhost: the app's HTTP functions, the Durable management API,
the Event Grid webhook and the host status, all on one loopback port.

Paths follow the Functions host: `/api/<route>` (route prefix from host.json),
`/runtime/webhooks/durabletask/...`, `/runtime/webhooks/eventgrid` and
`/admin/host/status`. Requests are logged with method, path without query
string, status and duration; never headers, query strings or bodies.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import azure.functions as func
from aiohttp import web
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.http import HttpResponseConverter
from multidict import CIMultiDict

from . import protocol
from .engine import Engine
from .errors import (
    InstanceExists,
    InstanceFinished,
    InstanceNotFound,
    InvalidOperation,
    UnknownOrchestrator,
)
from .functions import FunctionEntry, HttpFunction
from .keys import key_matches
from .routes import Router
from .status import ALL_STATUSES, FAILED, TERMINAL_STATUSES

log = logging.getLogger("devhost.http")

DURABLE_PREFIX = "/runtime/webhooks/durabletask"
EVENT_GRID_PATHS = ("/runtime/webhooks/eventgrid", "/runtime/webhooks/EventGrid")
KEY_HEADER = "x-functions-key"
CONTINUATION_HEADER = "x-ms-continuation-token"
# Instances per page of `GET /instances` when the request names no `top`: the
# Durable extension's OrchestrationStatusQueryCondition.PageSize default. The
# 1.x SDK's get_status_by sends no `top` and ignores the continuation token, so
# it returns only this first page, here as in Azure.
DEFAULT_PAGE_SIZE = 100
# The connection name the host reports for the default storage connection.
CONNECTION_NAME = "Storage"

_STATUS_BY_LOWER = {status.lower(): status for status in ALL_STATUSES}
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection"}


def ensure_loopback(host: str) -> str:
    """Return `host` if it is a loopback IP address (or localhost), else raise."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ValueError(
            f"devhost listens on loopback only; --host must be an address such as "
            f"127.0.0.1 or ::1, got {host!r}"
        )
    return host


def json_body_to_text(body: bytes) -> str | None:
    """Turn a request body into the JSON text stored as input or event data.

    `DurableOrchestrationClient` posts `df_dumps(value)` as a JSON string, so
    a string body that contains JSON text is that text. Any other JSON body (for
    example from curl) is stored as its own JSON text. An empty body is None.
    Raises ValueError for a body that is not JSON.
    """
    if not body.strip():
        return None
    value = json.loads(body)
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return json.dumps(value)
        return value
    return json.dumps(value)


class DevHostServer:
    def __init__(
        self,
        engine: Engine,
        *,
        function_key: str,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.engine = engine
        self.host = ensure_loopback(host)
        self.port = port
        self.base_url = ""
        self._function_key = function_key
        self._runner: web.AppRunner | None = None
        self._router: Router[HttpFunction] = Router()
        for function in engine.app.http_functions:
            self._router.add(function.route, function.methods, function)
        self.app = self._build_app()

    async def start(self) -> str:
        """Start listening; return the base URL (with the real port for port 0)."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        url_host = f"[{self.host}]" if ":" in self.host else self.host
        self.base_url = f"http://{url_host}:{self.port}"
        log.info("http.listening url=%s", self.base_url)
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            log.info("http.stopped url=%s", self.base_url)

    # Binding and payloads ------------------------------------------------

    def client_binding_json(self, task_hub: str | None = None) -> str:
        """Build the durableClient binding value the host passes to a function."""
        hub = task_hub or self.engine.task_hub
        base = f"{self.base_url}{DURABLE_PREFIX}"
        query = f"taskHub={hub}&connection={CONNECTION_NAME}"
        instance = f"{base}/instances/INSTANCEID"
        create = f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]"
        binding = {
            "taskHubName": hub,
            "creationUrls": {
                "createNewInstancePostUri": f"{create}?{query}",
                "createAndWaitOnNewInstancePostUri": (
                    f"{create}?timeout={{timeoutInSeconds}}"
                    f"&pollingInterval={{intervalInSeconds}}&{query}"
                ),
            },
            "managementUrls": _management_urls(instance, query, "INSTANCEID"),
            "baseUrl": base,
            "requiredQueryStringParameters": query,
            "rpcBaseUrl": f"{base}/",
            "httpBaseUrl": "",
        }
        return json.dumps(binding)

    def management_payload(self, instance_id: str) -> dict[str, str]:
        base = f"{self.base_url}{DURABLE_PREFIX}"
        query = f"taskHub={self.engine.task_hub}&connection={CONNECTION_NAME}"
        return _management_urls(f"{base}/instances/{instance_id}", query, instance_id)

    # Application ---------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._log_requests], client_max_size=64 * 2**20
        )
        routes = app.router
        routes.add_get("/admin/host/status", self._host_status)
        for path in EVENT_GRID_PATHS:
            routes.add_post(path, self._event_grid)

        durable = DURABLE_PREFIX
        routes.add_post(f"{durable}/orchestrators/{{name}}", self._start)
        routes.add_post(
            f"{durable}/orchestrators/{{name}}/{{instance_id}}", self._start
        )
        for path in (f"{durable}/instances", f"{durable}/instances/"):
            routes.add_get(path, self._list_instances)
            routes.add_delete(path, self._purge_by)
        routes.add_get(f"{durable}/instances/{{instance_id}}", self._get_status)
        routes.add_delete(f"{durable}/instances/{{instance_id}}", self._purge)
        routes.add_post(
            f"{durable}/instances/{{instance_id}}/raiseEvent/{{event_name}}",
            self._raise_event,
        )
        routes.add_post(
            f"{durable}/instances/{{instance_id}}/{{operation}}", self._operation
        )
        routes.add_route("*", f"{durable}/entities/{{tail:.*}}", self._entities)

        prefix = self.engine.app.route_prefix
        routes.add_route(
            "*", f"/{prefix}/{{tail:.*}}" if prefix else "/{tail:.*}", self._function
        )
        return app

    @web.middleware
    async def _log_requests(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        started = time.monotonic()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        except Exception:
            log.exception("http.error method=%s path=%s", request.method, request.path)
            response = web.Response(status=500)
        log.info(
            "http.request method=%s path=%s status=%d duration_ms=%d",
            request.method,
            request.path,
            response.status,
            (time.monotonic() - started) * 1000,
        )
        if isinstance(response, web.HTTPException):
            raise response
        return response

    def _authorized(self, request: web.Request) -> bool:
        provided = request.query.get("code") or request.headers.get(KEY_HEADER)
        return key_matches(self._function_key, provided)

    async def _host_status(self, request: web.Request) -> web.Response:
        return web.json_response({"state": "Running"})

    # App functions -------------------------------------------------------

    async def _function(self, request: web.Request) -> web.StreamResponse:
        found = self._router.match(request.match_info["tail"], request.method)
        if found is None:
            return web.Response(status=404)
        function, route_params = found
        if function.auth_level != "anonymous" and not self._authorized(request):
            log.info("http.unauthorized function=%s", function.name)
            return web.Response(status=401)

        body = await request.read()
        http_request = func.http.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query),
            route_params=route_params,
            body_type="bytes",
            body=body,
        )
        kwargs = self._function_arguments(function, http_request)
        try:
            result = await _call(function.func, kwargs)
            return _to_web_response(result)
        except Exception:
            log.exception("function.failed function=%s", function.name)
            return web.Response(status=500)

    def _function_arguments(self, function: FunctionEntry, trigger_value: Any) -> dict:
        kwargs = function.keyword_arguments(trigger_value, self.engine.app.app_dir)
        if function.client is not None:
            kwargs[function.client.name] = self.client_binding_json(
                function.client.task_hub
            )
        return kwargs

    async def _event_grid(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401)
        name = request.query.get("functionName", "")
        function = self.engine.app.event_grid_function(name)
        if function is None:
            return _message(404, f"No Event Grid function named '{name}'.")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _message(400, "The request body is not valid JSON.")
        events = body if isinstance(body, list) else [body]
        if not all(isinstance(event, dict) for event in events):
            return _message(400, "Expected an Event Grid event or an array of events.")

        if request.headers.get("aeg-event-type") == "SubscriptionValidation":
            code = (events[0].get("data") or {}).get("validationCode")
            return web.json_response({"validationResponse": code})

        failures = await self.deliver_event_grid(function, events)
        return web.Response(status=500 if failures else 202)

    async def deliver_event_grid_to(
        self, function_name: str, events: list[dict]
    ) -> int:
        """Deliver events to the eventGridTrigger function with that name."""
        function = self.engine.app.event_grid_function(function_name)
        if function is None:
            raise LookupError(f"no eventGridTrigger function named {function_name!r}")
        return await self.deliver_event_grid(function, events)

    async def deliver_event_grid(
        self, function: FunctionEntry, events: list[dict]
    ) -> int:
        """Invoke an eventGridTrigger function once per event; return the failures."""
        failures = 0
        for event in events:
            datum = meta.Datum(type="json", value=json.dumps(event))
            try:
                trigger_value = EventGridEventInConverter.decode(
                    datum, trigger_metadata=None
                )
                await _call(
                    function.func, self._function_arguments(function, trigger_value)
                )
            except Exception:
                failures += 1
                log.exception(
                    "function.failed function=%s event_id=%s",
                    function.name,
                    event.get("id"),
                )
        log.info(
            "eventgrid.delivered function=%s events=%d failures=%d",
            function.name,
            len(events),
            failures,
        )
        return failures

    # Durable management API ----------------------------------------------

    async def _start(self, request: web.Request) -> web.Response:
        try:
            input_json = json_body_to_text(await request.read())
        except ValueError:
            return _message(400, "The request body is not valid JSON.")
        try:
            instance_id = self.engine.start_new_json(
                request.match_info["name"],
                input_json,
                instance_id=request.match_info.get("instance_id"),
                version=request.query.get("version"),
            )
        except UnknownOrchestrator as exc:
            return web.json_response(
                {"Message": str(exc), "ExceptionMessage": str(exc)}, status=400
            )
        except InstanceExists as exc:
            return _message(409, str(exc))
        payload = self.management_payload(instance_id)
        headers = {"Location": payload["statusQueryGetUri"], "Retry-After": "10"}
        return web.json_response(payload, status=202, headers=headers)

    async def _get_status(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        status = self.engine.get_status(
            instance_id,
            show_history=_flag(request, "showHistory", False),
            show_history_output=_flag(request, "showHistoryOutput", False),
            show_input=_flag(request, "showInput", True),
        )
        if status is None:
            return web.Response(status=404)
        runtime_status = status["runtimeStatus"]
        if runtime_status not in TERMINAL_STATUSES:
            location = self.management_payload(instance_id)["statusQueryGetUri"]
            headers = {"Location": location, "Retry-After": "10"}
            return web.json_response(status, status=202, headers=headers)
        if runtime_status == FAILED and _flag(
            request, "returnInternalServerErrorOnFailure", False
        ):
            return web.json_response(status, status=500)
        return web.json_response(status, status=200)

    async def _list_instances(self, request: web.Request) -> web.Response:
        try:
            filters = _instance_filters(request)
            statuses, token = self.engine.query(
                **filters,
                prefix=request.query.get("instanceIdPrefix") or None,
                top=_page_size(request),
                continuation_token=request.headers.get(CONTINUATION_HEADER),
                show_input=_flag(request, "showInput", False),
            )
        except (ValueError, InvalidOperation) as exc:
            return _message(400, str(exc))
        response = web.json_response(statuses)
        if token:
            response.headers[CONTINUATION_HEADER] = token
        return response

    async def _raise_event(self, request: web.Request) -> web.Response:
        try:
            data_json = json_body_to_text(await request.read())
        except ValueError:
            return _message(400, "Only application/json request content is supported.")
        try:
            self.engine.raise_event(
                request.match_info["instance_id"],
                request.match_info["event_name"],
                data_json,
            )
        except InstanceNotFound as exc:
            return _message(404, str(exc))
        except InstanceFinished as exc:
            return _message(410, str(exc))
        return web.Response(status=202)

    async def _operation(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        operation = request.match_info["operation"].lower()
        reason = request.query.get("reason", "")
        engine = self.engine
        simple_operations: dict[str, Callable[[str, str], None]] = {
            "terminate": engine.terminate,
            "suspend": engine.suspend,
            "resume": engine.resume,
            "rewind": engine.rewind,
        }
        try:
            if operation in simple_operations:
                simple_operations[operation](instance_id, reason)
                return web.Response(status=202)
            if operation == "restart":
                new_id = _flag(request, "restartWithNewInstanceId", True)
                restarted = engine.restart(instance_id, new_instance_id=new_id)
                # A JSON string, which DurableOrchestrationClient.restart returns.
                return web.json_response(restarted, status=202)
        except InstanceNotFound as exc:
            return _message(404, str(exc))
        except (InstanceFinished, InvalidOperation) as exc:
            return _message(410, str(exc))
        except InstanceExists as exc:
            return _message(409, str(exc))
        return _message(404, f"Unknown instance operation '{operation}'.")

    async def _purge(self, request: web.Request) -> web.Response:
        try:
            deleted = self.engine.purge(request.match_info["instance_id"])
        except InvalidOperation as exc:
            return _message(409, str(exc))
        if not deleted:
            return web.Response(status=404)
        return web.json_response({"instancesDeleted": deleted})

    async def _purge_by(self, request: web.Request) -> web.Response:
        try:
            filters = _instance_filters(request)
        except ValueError as exc:
            return _message(400, str(exc))
        deleted = self.engine.purge_by(**filters)
        if not deleted:
            return web.Response(status=404)
        return web.json_response({"instancesDeleted": deleted})

    async def _entities(self, request: web.Request) -> web.Response:
        return _message(501, "devhost does not support Durable Entities.")


def _management_urls(instance_url: str, query: str, instance_id: str) -> dict[str, str]:
    return {
        "id": instance_id,
        "statusQueryGetUri": f"{instance_url}?{query}",
        "sendEventPostUri": f"{instance_url}/raiseEvent/{{eventName}}?{query}",
        "terminatePostUri": f"{instance_url}/terminate?reason={{text}}&{query}",
        "rewindPostUri": f"{instance_url}/rewind?reason={{text}}&{query}",
        "purgeHistoryDeleteUri": f"{instance_url}?{query}",
        "restartPostUri": f"{instance_url}/restart?{query}",
        "suspendPostUri": f"{instance_url}/suspend?reason={{text}}&{query}",
        "resumePostUri": f"{instance_url}/resume?reason={{text}}&{query}",
    }


async def _call(function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Await an async function; run a sync one on the loop's thread pool."""
    if inspect.iscoroutinefunction(function):
        return await function(**kwargs)
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(None, functools.partial(function, **kwargs))
    if inspect.isawaitable(result):
        result = await result
    return result


def _to_web_response(result: Any) -> web.Response:
    """Map a function's return value to a response, as the HTTP output binding does."""
    if result is None:
        return web.Response(status=204)
    datum = HttpResponseConverter.encode(result, expected_type=None)
    if datum.type == "string":
        return web.Response(text=datum.value, content_type="text/plain")

    value = datum.value
    headers: CIMultiDict[str] = CIMultiDict()
    for name, header in value["headers"].items():
        if name.lower() not in _HOP_BY_HOP:
            headers.add(name, header.value)
    for cookie in value.get("cookies") or []:
        for morsel in cookie.values():
            headers.add("Set-Cookie", morsel.OutputString())
    return web.Response(
        status=int(value["status_code"].value),
        headers=headers,
        body=value["body"].value,
    )


def _message(status: int, text: str) -> web.Response:
    return web.json_response({"Message": text}, status=status)


def _flag(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    return value.lower() in ("true", "1", "yes")


def _page_size(request: web.Request) -> int:
    """Read `top`; raise ValueError unless it is a whole number of 1 or more."""
    text = request.query.get("top")
    if not text:
        return DEFAULT_PAGE_SIZE
    try:
        top = int(text)
    except ValueError:
        raise ValueError(f"top {text!r} is not a whole number") from None
    # NOTE: what the host does with top=0 or a negative top is not documented;
    # devhost rejects it.
    if top < 1:
        raise ValueError(f"top must be 1 or more, got {top}")
    return top


def _instance_filters(request: web.Request) -> dict[str, Any]:
    """Read createdTimeFrom, createdTimeTo and runtimeStatus; raise ValueError."""
    filters: dict[str, Any] = {
        "created_from": _optional_time(request, "createdTimeFrom"),
        "created_to": _optional_time(request, "createdTimeTo"),
        "statuses": None,
    }
    status_text = request.query.get("runtimeStatus")
    if status_text:
        statuses = []
        for item in status_text.split(","):
            status = _STATUS_BY_LOWER.get(item.strip().lower())
            if status is None:
                raise ValueError(
                    f"runtimeStatus {item!r} is not one of {', '.join(ALL_STATUSES)}"
                )
            statuses.append(status)
        filters["statuses"] = statuses
    return filters


def _optional_time(request: web.Request, name: str) -> datetime | None:
    text = request.query.get(name)
    if not text:
        return None
    try:
        return protocol.parse_timestamp(text)
    except ValueError as exc:
        raise ValueError(f"{name} {text!r} is not an ISO 8601 time") from exc
