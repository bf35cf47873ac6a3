"""The functions the templates point at exist in the app with the right triggers,
every binding is one that Flex Consumption runs, and the HTTP routes resolve to
the intended functions.

The app is listed in a child process (tests/app_functions.py).
"""

import pytest

from devhost.routes import Router
from tests.app_functions import (
    AppFunctions,
    http_routes,
    list_app_functions,
    route_prefix,
)

from .bicep_tree import MAIN, literal, load

# Binding types the app may use. Each runs on the Flex Consumption plan with the
# Python v2 model and extension bundle 4.x: HTTP, Event Grid and the Durable
# Functions triggers and client. A new type needs its Flex support checked first
# ("Flex Consumption plan" considerations in the Azure Functions docs), then an
# entry here. The blob trigger is allowed only with the Event Grid source, which
# test_blob_triggers_use_event_grid_source checks.
FLEX_BINDING_TYPES = {
    "httpTrigger",
    "http",
    "eventGridTrigger",
    "blobTrigger",
    "durableClient",
    "orchestrationTrigger",
    "activityTrigger",
}

# (method, path below the route prefix, function that must serve it)
EXPECTED_ROUTES = [
    ("POST", "incidents", "post_incident"),
    ("GET", "incidents", "list_incidents"),
    ("POST", "incidents/purge", "purge_incidents"),
    ("POST", "incidents/inc-7d3e1f52-0123456789ab/rerun", "rerun_incident"),
    ("GET", "incidents/inc-7d3e1f52-0123456789ab", "get_incident_status"),
    ("GET", "incidents/purge", "get_incident_status"),
]


@pytest.fixture(scope="module")
def app_functions() -> AppFunctions:
    return list_app_functions()


def _bindings(app_functions, binding_type):
    return [
        (name, binding)
        for name, bindings in app_functions.functions.items()
        for binding in bindings
        if binding.get("type") == binding_type
    ]


def _main_variable(name):
    main = load(MAIN)
    return literal(main, main.body(main.declarations("variable")[name]))


def test_function_app_loads(app_functions):
    assert app_functions.error is None, app_functions.error


def test_upload_event_function_exists(app_functions):
    assert app_functions.error is None, app_functions.error
    name = _main_variable("uploadEventFunctionName")
    assert name in app_functions.functions, f"no function named {name}"


def test_upload_function_is_event_grid(app_functions):
    assert app_functions.error is None, app_functions.error
    name = _main_variable("uploadEventFunctionName")
    types = [b.get("type") for b in app_functions.functions.get(name, [])]
    assert "eventGridTrigger" in types


def test_blob_triggers_use_event_grid_source(app_functions):
    """Flex Consumption supports the blob trigger only with the Event Grid source."""
    assert app_functions.error is None, app_functions.error
    polling = [
        name
        for name, binding in _bindings(app_functions, "blobTrigger")
        if binding.get("source") != "EventGrid"
    ]
    assert polling == []


def test_blob_trigger_has_account_contributor(app_functions):
    """A blob trigger on identity-based AzureWebJobsStorage needs Storage Account
    Contributor (Functions host storage permissions); the template does not grant it."""
    assert app_functions.error is None, app_functions.error
    triggers = [name for name, _ in _bindings(app_functions, "blobTrigger")]
    granted = "17d1049b-9a84-46fb-8f53-869881c3d3ab" in MAIN.read_text()
    assert granted or triggers == []


def _webhook_route():
    path = _main_variable("incidentWebhookPath")
    prefix = route_prefix()
    assert path.startswith(f"{prefix}/"), f"{path} lacks the route prefix {prefix}/"
    return path.removeprefix(f"{prefix}/")


def _webhook_binding(app_functions):
    route = _webhook_route()
    matches = [
        b
        for _, b in _bindings(app_functions, "httpTrigger")
        if b.get("route") == route
        and "POST" in [m.upper() for m in b.get("methods") or []]
    ]
    assert len(matches) == 1, f"expected one POST httpTrigger with route {route}"
    return matches[0]


def test_webhook_route_served(app_functions):
    assert app_functions.error is None, app_functions.error
    assert _webhook_binding(app_functions) is not None


def test_webhook_accepts_post(app_functions):
    assert app_functions.error is None, app_functions.error
    methods = [m.upper() for m in _webhook_binding(app_functions).get("methods") or []]
    assert "POST" in methods


def test_webhook_requires_function_key(app_functions):
    assert app_functions.error is None, app_functions.error
    assert str(_webhook_binding(app_functions).get("authLevel")).upper() == "FUNCTION"


def test_every_http_route_requires_function_key(app_functions):
    assert app_functions.error is None, app_functions.error
    open_routes = [
        r.function
        for r in http_routes(app_functions)
        if r.auth_level.upper() != "FUNCTION"
    ]
    assert open_routes == []


def test_bindings_supported_on_flex(app_functions):
    assert app_functions.error is None, app_functions.error
    unknown = sorted(
        {
            f"{name}: {binding.get('type')}"
            for name, bindings in app_functions.functions.items()
            for binding in bindings
            if binding.get("type") not in FLEX_BINDING_TYPES
        }
    )
    assert unknown == []


def test_http_routes_unique(app_functions):
    assert app_functions.error is None, app_functions.error
    seen = [
        (method, route.route.lower())
        for route in http_routes(app_functions)
        for method in route.methods
    ]
    assert len(seen) == len(set(seen))


def _router(app_functions):
    router = Router()
    for route in http_routes(app_functions):
        router.add(route.route, route.methods or None, route.function)
    return router


@pytest.mark.parametrize(("method", "path", "function"), EXPECTED_ROUTES)
def test_route_resolves(app_functions, method, path, function):
    """devhost's router takes the first match in registration order; the
    Functions host prefers literal segments. Both must pick the same function."""
    assert app_functions.error is None, app_functions.error
    found = _router(app_functions).match(path, method)
    assert found is not None, f"{method} {path} matches no route"
    assert found[0] == function


def _covers(template: list[str], path: list[str]) -> bool:
    """Tell whether a route template's segments match a literal path's segments."""
    if len(template) != len(path):
        return False
    return all(t == p or t.startswith("{") for t, p in zip(template, path, strict=True))


def test_literal_routes_before_parameters(app_functions):
    """A literal route registered after a parameter route with the same method
    and segment count would be served by the parameter route in devhost."""
    assert app_functions.error is None, app_functions.error
    routes = http_routes(app_functions)
    late = []
    for index, route in enumerate(routes):
        segments = route.route.split("/")
        if any(s.startswith("{") for s in segments):
            continue
        for earlier in routes[:index]:
            shared_methods = set(earlier.methods) & set(route.methods)
            if shared_methods and _covers(earlier.route.split("/"), segments):
                late.append(f"{route.route} after {earlier.route}")
    assert late == []
