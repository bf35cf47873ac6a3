"""The docs list what the app has: settings, HTTP routes and log events."""

import re
from pathlib import Path

import pytest

import settings
from tests.app_functions import http_routes, list_app_functions, route_prefix

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
CONFIGURATION = (DOCS / "configuration.md").read_text()
OPERATIONS = (DOCS / "operations.md").read_text()

# Endpoints are written as `METHOD /<prefix>/<route>` in backticks.
ENDPOINT = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) /([^`?\s]+)`")
# The first column of the log events table: | `event.name` | level | meaning |
LOG_EVENT_ROW = re.compile(
    r"^\| `([a-z_]+\.[a-z_]+)` \| (?:info|warning|error) \|", re.M
)
RUNTIME_SOURCES = [
    path
    for pattern in (
        "*.py",
        "activities/*.py",
        "clients/*.py",
        "enrichment/*.py",
        "operations/*.py",
        "orchestrators/*.py",
    )
    for path in sorted(REPO.glob(pattern))
]
TROUBLESHOOTING_TOPICS = [
    "ActiveRequestAlreadyExists",
    "DisallowedOperation",
    "Missing application roles",
    "Sandbox quota",
    "Defender for Storage",
]


@pytest.mark.parametrize("setting", settings.SETTINGS, ids=lambda s: s.name)
def test_setting_documented(setting):
    assert f"| `{setting.name}` |" in CONFIGURATION


@pytest.fixture(scope="module")
def app_endpoints() -> set[tuple[str, str]]:
    functions = list_app_functions()
    assert functions.error is None, functions.error
    prefix = route_prefix()
    return {
        (method, f"{prefix}/{route.route}")
        for route in http_routes(functions)
        for method in route.methods
    }


def documented_endpoints() -> set[tuple[str, str]]:
    return set(ENDPOINT.findall(OPERATIONS))


def test_operations_doc_names_endpoints():
    assert len(documented_endpoints()) >= 5


def test_documented_endpoints_exist(app_endpoints):
    assert sorted(documented_endpoints() - app_endpoints) == []


def test_app_endpoints_documented(app_endpoints):
    assert sorted(app_endpoints - documented_endpoints()) == []


def _runtime_source() -> str:
    return "\n".join(path.read_text() for path in RUNTIME_SOURCES)


def test_log_events_table_present():
    assert len(LOG_EVENT_ROW.findall(OPERATIONS)) >= 20


@pytest.mark.parametrize("event", LOG_EVENT_ROW.findall(OPERATIONS))
def test_documented_log_event_is_logged(event):
    assert f'"{event} ' in _runtime_source() or f'"{event}"' in _runtime_source()


@pytest.mark.parametrize("topic", TROUBLESHOOTING_TOPICS)
def test_troubleshooting_covers(topic):
    troubleshooting = OPERATIONS.split("## Troubleshooting", 1)[1]
    assert topic in troubleshooting
