"""The functions the templates point at exist in the app with the right triggers.

The app is loaded in a child process: `get_functions()` may run only once per app
object, and importing function_app must not leak state into other tests.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

import settings

from .bicep_tree import MAIN, REPO, literal, load

FUNCTION_APP_FILE = REPO / "function_app.py"

# Print every function of function_app's FunctionApp object, with bindings, as JSON.
_LIST_FUNCTIONS = """
import json, sys
import azure.functions as func
import function_app
apps = [v for v in vars(function_app).values() if isinstance(v, func.FunctionRegister)]
if len(apps) != 1:
    sys.exit(f"function_app.py defines {len(apps)} FunctionApp objects, expected 1")
functions = [
    {
        "name": f.get_function_name(),
        "bindings": [b.get_dict_repr() for b in f.get_bindings()],
    }
    for f in apps[0].get_functions()
]
print(json.dumps(functions, default=str))
"""


@dataclass(frozen=True)
class AppFunctions:
    """Functions of function_app.py, or the reason they could not be listed."""

    functions: dict[str, list[dict]]
    error: str | None


@pytest.fixture(scope="module")
def app_functions() -> AppFunctions:
    if not FUNCTION_APP_FILE.is_file():
        return AppFunctions({}, f"{FUNCTION_APP_FILE} does not exist yet")

    # Required settings get placeholders so that an import-time settings check cannot
    # hide the function list; nothing here contacts a service.
    env = dict(os.environ)
    for setting in settings.SETTINGS:
        if setting.default is None:
            env.setdefault(setting.name, f"placeholder-{setting.name.lower()}")
    result = subprocess.run(
        [sys.executable, "-c", _LIST_FUNCTIONS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        return AppFunctions({}, f"listing the app's functions failed:\n{result.stderr}")
    functions = {f["name"]: f["bindings"] for f in json.loads(result.stdout)}
    return AppFunctions(functions, None)


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
    host = json.loads((REPO / "host.json").read_text())
    prefix = host.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    assert path.startswith(f"{prefix}/"), f"{path} lacks the route prefix {prefix}/"
    return path.removeprefix(f"{prefix}/")


def _webhook_binding(app_functions):
    route = _webhook_route()
    matches = [
        b for _, b in _bindings(app_functions, "httpTrigger") if b.get("route") == route
    ]
    assert len(matches) == 1, f"expected one httpTrigger with route {route}"
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
