"""host.json settings that Flex Consumption and the Python Durable SDK require."""

import json

from .bicep_tree import REPO

HOST = json.loads((REPO / "host.json").read_text())
DURABLE = HOST.get("extensions", {}).get("durableTask", {})


def test_host_schema_version():
    assert HOST.get("version") == "2.0"


def test_extension_bundle_id():
    bundle = HOST.get("extensionBundle", {})
    assert bundle.get("id") == "Microsoft.Azure.Functions.ExtensionBundle"


def test_extension_bundle_version():
    """Flex Consumption needs bundle [4.0.0, 5.0.0) or later for non-C# apps."""
    assert HOST.get("extensionBundle", {}).get("version") == "[4.*, 5.0.0)"


def test_extended_sessions_disabled():
    """Extended sessions are for .NET only; Python functions can silently not run."""
    assert DURABLE.get("extendedSessionsEnabled") is False


def test_task_hub_named():
    hub = DURABLE.get("hubName")
    assert isinstance(hub, str) and hub.strip(), f"durableTask.hubName is {hub!r}"


def test_storage_provider_is_azure_storage():
    """Azure Storage is the only Durable backend Flex Consumption supports."""
    assert DURABLE.get("storageProvider", {}).get("type") == "AzureStorage"
