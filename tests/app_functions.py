"""List the functions of function_app.py and their bindings, in a child process.

`get_functions()` may run only once per app object, and importing
function_app must not leak state into other tests, so a child process imports
the app and prints its functions as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import settings

REPO = Path(__file__).resolve().parent.parent
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
    """Functions of function_app.py in registration order, or why they are missing."""

    functions: dict[str, list[dict]]
    error: str | None


@dataclass(frozen=True)
class HttpRoute:
    """One HTTP function: its name, route template, methods and auth level."""

    function: str
    route: str
    methods: tuple[str, ...]
    auth_level: str


def list_app_functions() -> AppFunctions:
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


def http_routes(app_functions: AppFunctions) -> list[HttpRoute]:
    """Return the app's HTTP functions in registration order."""
    routes = []
    for name, bindings in app_functions.functions.items():
        for binding in bindings:
            if binding.get("type") != "httpTrigger":
                continue
            routes.append(
                HttpRoute(
                    name,
                    str(binding.get("route") or name),
                    tuple(m.upper() for m in binding.get("methods") or ()),
                    str(binding.get("authLevel")),
                )
            )
    return routes


def route_prefix() -> str:
    """Return host.json's HTTP route prefix (`api` unless it sets another)."""
    host = json.loads((REPO / "host.json").read_text())
    return host.get("extensions", {}).get("http", {}).get("routePrefix", "api")
