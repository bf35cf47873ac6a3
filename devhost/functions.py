"""Index of an app's functions, read the way the Functions host reads them.

The Python v2 model declares functions with decorators on a `FunctionApp` (here a
`df.DFApp`). The host's worker calls `get_functions()` once and reads each
function's binding JSON; devhost does the same and keeps one index per app
object, because a second `get_functions()` call on the same object raises
"does not have a unique function name".
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
import types
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

log = logging.getLogger("devhost.functions")

DEFAULT_TASK_HUB = "TestHubName"
DEFAULT_ROUTE_PREFIX = "api"

_INDEXES: weakref.WeakKeyDictionary[Any, AppIndex] = weakref.WeakKeyDictionary()

# Bindings devhost supplies besides the trigger: the durable client, and the
# HTTP output binding that carries the return value.
_SUPPORTED_EXTRA_BINDINGS = {"durableClient", "http"}


@dataclass(frozen=True)
class DurableClientBinding:
    name: str
    task_hub: str | None = None


@dataclass
class InvocationContext:
    """Stand-in for `azure.functions.Context`, passed to a `context` parameter."""

    function_name: str
    function_directory: str
    invocation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    trace_context: Any = None
    retry_context: Any = None


@dataclass
class FunctionEntry:
    name: str
    func: Callable[..., Any]
    trigger_type: str
    trigger_param: str
    bindings: list[dict]
    client: DurableClientBinding | None = None
    wants_context: bool = False

    def keyword_arguments(self, trigger_value: Any, app_dir: Path) -> dict[str, Any]:
        kwargs = {self.trigger_param: trigger_value}
        if self.wants_context:
            kwargs["context"] = InvocationContext(self.name, str(app_dir))
        return kwargs


@dataclass
class HttpFunction(FunctionEntry):
    route: str = ""
    methods: tuple[str, ...] | None = None
    auth_level: str = "function"


@dataclass
class OrchestratorFunction(FunctionEntry):
    def invoke(self, context_json: str) -> str:
        """Run one episode; return the state JSON or raise the SDK's error."""
        return self.func(func.OrchestrationContext(context_json))


@dataclass
class ActivityFunction(FunctionEntry):
    def invoke(self, input_json: str | None, app_dir: Path) -> str:
        """Call the activity with its decoded input; return the JSON-encoded result.

        Decoding and encoding go through the worker's own converter, so custom
        objects with `to_json`/`from_json` behave as in Azure. An async activity
        runs to completion on an event loop of its own.
        """
        datum = meta.Datum(type="json", value=input_json or "null")
        value = ActivityTriggerConverter.decode(datum, trigger_metadata=None)
        result = self.func(**self.keyword_arguments(value, app_dir))
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        return ActivityTriggerConverter.encode(result, expected_type=None).value


async def _await(awaitable: Any) -> Any:
    return await awaitable


@dataclass
class AppIndex:
    """Functions of one app by kind; names are matched case-insensitively."""

    app_dir: Path
    host_json: dict
    task_hub: str
    route_prefix: str
    orchestrators: dict[str, OrchestratorFunction] = field(default_factory=dict)
    activities: dict[str, ActivityFunction] = field(default_factory=dict)
    http_functions: list[HttpFunction] = field(default_factory=list)
    event_grid_functions: dict[str, FunctionEntry] = field(default_factory=dict)

    def orchestrator(self, name: str) -> OrchestratorFunction | None:
        return self.orchestrators.get(name.lower())

    def activity(self, name: str) -> ActivityFunction | None:
        return self.activities.get(name.lower())

    def event_grid_function(self, name: str) -> FunctionEntry | None:
        return self.event_grid_functions.get(name.lower())


def load_app(target: Any, app_dir: Path | None = None) -> AppIndex:
    """Index the functions of an app.

    `target` is a module name (imported from sys.path), a module, a
    `FunctionRegister` such as `df.DFApp`, or an `AppIndex` (returned as is).
    The app folder, where host.json is read, defaults to the module's folder,
    or to the current folder for an app object.
    """
    if isinstance(target, AppIndex):
        return target
    if isinstance(target, str):
        target = importlib.import_module(target)
    if isinstance(target, types.ModuleType):
        module_dir = Path(target.__file__).resolve().parent
        app = _find_app(target)
    else:
        app = target
        module_dir = Path.cwd()
    if not isinstance(app, func.FunctionRegister):
        raise TypeError(f"expected a FunctionApp or DFApp, got {type(app).__name__}")

    cached = _INDEXES.get(app)
    if cached is not None:
        return cached
    index = _build_index(app, app_dir or module_dir)
    _INDEXES[app] = index
    return index


def _find_app(module: types.ModuleType) -> func.FunctionRegister:
    apps = [
        value
        for value in vars(module).values()
        if isinstance(value, func.FunctionRegister)
    ]
    if len(apps) != 1:
        raise ValueError(
            f"module {module.__name__} must define exactly one FunctionApp at module "
            f"level, found {len(apps)}"
        )
    return apps[0]


def read_host_json(app_dir: Path) -> dict:
    path = app_dir / "host.json"
    if not path.exists():
        log.warning("host_json.missing path=%s", path)
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _build_index(app: func.FunctionRegister, app_dir: Path) -> AppIndex:
    host_json = read_host_json(app_dir)
    extensions = host_json.get("extensions") or {}
    task_hub = (extensions.get("durableTask") or {}).get("hubName") or DEFAULT_TASK_HUB
    route_prefix = (extensions.get("http") or {}).get("routePrefix")
    if route_prefix is None:
        route_prefix = DEFAULT_ROUTE_PREFIX
    index = AppIndex(
        app_dir=app_dir,
        host_json=host_json,
        task_hub=task_hub,
        route_prefix=route_prefix.strip("/"),
    )

    for function in app.get_functions():
        _add_function(index, function)
    log.info(
        "app.indexed orchestrators=%d activities=%d http=%d event_grid=%d hub=%s",
        len(index.orchestrators),
        len(index.activities),
        len(index.http_functions),
        len(index.event_grid_functions),
        task_hub,
    )
    return index


def _add_function(index: AppIndex, function: func.Function) -> None:
    name = function.get_function_name()
    bindings = json.loads(function.get_function_json())["bindings"]
    trigger = next(b for b in bindings if b["type"] == function.get_trigger().type)
    extras = [b for b in bindings if b is not trigger]
    unsupported = [
        b["type"] for b in extras if b["type"] not in _SUPPORTED_EXTRA_BINDINGS
    ]
    if unsupported:
        log.warning(
            "function.skipped function=%s reason=unsupported_bindings bindings=%s",
            name,
            ",".join(unsupported),
        )
        return

    client = None
    for binding in extras:
        if binding["type"] == "durableClient":
            client = DurableClientBinding(binding["name"], binding.get("taskHub"))
    user_function = function.get_user_function()
    common = {
        "name": name,
        "func": user_function,
        "trigger_type": trigger["type"],
        "trigger_param": trigger["name"],
        "bindings": bindings,
        "client": client,
        "wants_context": _wants_context(user_function, bindings),
    }

    trigger_type = trigger["type"]
    if trigger_type == "orchestrationTrigger":
        key = trigger.get("orchestration") or name
        index.orchestrators[key.lower()] = OrchestratorFunction(**common)
    elif trigger_type == "activityTrigger":
        key = trigger.get("activity") or name
        index.activities[key.lower()] = ActivityFunction(**common)
    elif trigger_type == "httpTrigger":
        methods = trigger.get("methods")
        index.http_functions.append(
            HttpFunction(
                **common,
                route=trigger.get("route") or name,
                methods=tuple(m.upper() for m in methods) if methods else None,
                auth_level=str(trigger.get("authLevel") or "function").lower(),
            )
        )
    elif trigger_type == "eventGridTrigger":
        index.event_grid_functions[name.lower()] = FunctionEntry(**common)
    else:
        log.warning(
            "function.skipped function=%s reason=unsupported_trigger trigger=%s",
            name,
            trigger_type,
        )


def _wants_context(user_function: Callable[..., Any], bindings: list[dict]) -> bool:
    try:
        parameters = inspect.signature(user_function).parameters
    except (TypeError, ValueError):
        return False
    binding_names = {b["name"] for b in bindings}
    return "context" in parameters and "context" not in binding_names
