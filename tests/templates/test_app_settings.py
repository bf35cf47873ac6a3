"""The template's app settings against the settings registry and the Flex rules.

The registry is `settings.SETTINGS`, read when the tests run, so a setting added to it
without a default fails here until the template sets it.
"""

import json

import pytest

import settings

from .bicep_tree import MAIN, MODULES, REPO, find_property, literal, load, walk

FUNCTION_APP = MODULES / "functionapp.bicep"
KEY_VAULT = MODULES / "keyvault.bicep"

# Settings the Functions platform reads, which the app's registry does not list.
PLATFORM_SETTINGS = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}
# Identity-based connection properties of an app setting prefix (Functions reference,
# "Common properties for identity-based connections" and the storage service URIs).
IDENTITY_CONNECTION_PROPERTIES = {
    "accountName",
    "blobServiceUri",
    "queueServiceUri",
    "tableServiceUri",
    "credential",
    "clientId",
}

# App settings the Flex Consumption plan deprecates ("Flex Consumption plan
# deprecations" in the Azure Functions app settings reference): runtime, scale and
# deployment moved to functionAppConfig, and the platform sets
# FUNCTIONS_EXTENSION_VERSION.
FLEX_DEPRECATED_SETTINGS = {
    "ENABLE_ORYX_BUILD",
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
    "FUNCTIONS_WORKER_PROCESS_COUNT",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTOVERVNET",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_DNS_SERVER",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "WEBSITE_NODE_DEFAULT_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
    "WEBSITE_VNET_ROUTE_ALL",
    # Not in that table; the Flex Consumption considerations list them as unsupported.
    "WEBSITE_TIME_ZONE",
    "TZ",
}
# Site properties the same table deprecates, compared case-insensitively.
FLEX_DEPRECATED_SITE_PROPERTIES = {
    "alwaysOn",
    "containerSize",
    "ftpsState",
    "functionAppScaleLimit",
    "isReserved",
    "isXenon",
    "javaVersion",
    "linuxFxVersion",
    "netFrameworkVersion",
    "powerShellVersion",
    "preWarmedInstanceCount",
    "use32BitWorkerProcess",
    "vnetBackupRestoreEnabled",
    "vnetContentShareEnabled",
    "vnetImagePullEnabled",
    "vnetRouteAllEnabled",
    "windowsFxVersion",
}

REQUIRED = [s for s in settings.SETTINGS if s.default is None]
SECRET = [s for s in settings.SETTINGS if s.secret]
# Settings whose empty default switches a feature off, which a deployment must not do:
# file analysis, and the analysis records and sandbox slots.
FEATURE_SWITCHES = ["UPLOAD_BLOB_ENDPOINT", "ANALYSIS_TABLE_ENDPOINT"]

# Modules deployed with the app (everything .funcignore keeps), which must read
# the environment only through settings.py.
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


def _template_settings():
    return load(MAIN).variable_object("appSettings")


def _setting_source(name):
    main = load(MAIN)
    return main.text(_template_settings()[name])


def _host_storage_connection():
    host = json.loads((REPO / "host.json").read_text())
    provider = host["extensions"]["durableTask"]["storageProvider"]
    return provider.get("connectionStringName", "AzureWebJobsStorage")


def _is_known(name):
    if name in PLATFORM_SETTINGS or name in {s.name for s in settings.SETTINGS}:
        return True
    prefix, _, prop = name.partition("__")
    return (
        prefix == _host_storage_connection() and prop in IDENTITY_CONNECTION_PROPERTIES
    )


@pytest.mark.parametrize("setting", REQUIRED, ids=lambda s: s.name)
def test_required_setting_set(setting):
    assert setting.name in _template_settings()


@pytest.mark.parametrize("name", sorted(_template_settings()))
def test_template_setting_known(name):
    assert _is_known(name), (
        f"{name} is neither in settings.SETTINGS nor a platform setting"
    )


@pytest.mark.parametrize("name", FEATURE_SWITCHES)
def test_feature_switch_defaults_off(name):
    defaults = {s.name: s.default for s in settings.SETTINGS}
    assert defaults.get(name) == ""


@pytest.mark.parametrize("name", FEATURE_SWITCHES)
def test_feature_switch_set(name):
    """A setting whose empty default turns a feature off is set by the template."""
    assert name in _template_settings()


def test_analysis_table_is_storage_table_endpoint():
    value = _setting_source("ANALYSIS_TABLE_ENDPOINT")
    assert value == "storage.outputs.tableEndpoint"


def test_upload_endpoint_is_storage_blob_endpoint():
    assert _setting_source("UPLOAD_BLOB_ENDPOINT") == "storage.outputs.blobEndpoint"


def test_upload_container_from_same_storage():
    assert _setting_source("UPLOAD_CONTAINER") == "storage.outputs.uploadContainerName"


@pytest.mark.parametrize("name", ["UPLOAD_ACCOUNT_KEY", "ANALYSIS_TABLE_ACCOUNT_KEY"])
def test_storage_account_key_absent(name):
    """Azure reaches the storage account with the app identity, never an account key."""
    assert name not in _template_settings()


@pytest.mark.parametrize(
    "path", RUNTIME_SOURCES, ids=lambda p: str(p.relative_to(REPO))
)
def test_environment_read_only_in_settings(path):
    """Only settings.py reads app settings, so SETTINGS lists every one the app uses."""
    if path.name == "settings.py" and path.parent == REPO:
        return
    source = path.read_text()
    assert "os.environ" not in source
    assert "getenv(" not in source


# Values of the template's expressions as a deployment in Azure's public cloud
# would resolve them.
RESOLVED_EXPRESSIONS = {
    "storage.outputs.blobEndpoint": "https://stanyrunexample.blob.core.windows.net/",
    "storage.outputs.uploadContainerName": "uploads",
    "storage.outputs.tableEndpoint": "https://stanyrunexample.table.core.windows.net/",
    "environment().resourceManager": "https://management.azure.com/",
    "'${environment().resourceManager}.default'": "https://management.azure.com/.default",
}


def _deployed_value(name):
    """Return the value an app setting gets from the template's defaults."""
    main = load(MAIN)
    node = _template_settings()[name]
    value = literal(main, node)
    if value is not None:
        return str(value)
    text = main.text(node)
    parameters = main.declarations("parameter")
    if text in parameters:
        default = main.body(parameters[text])
        value = literal(main, default)
        if value is not None:
            return str(value)
        text = main.text(default)
    if text.startswith("'@Microsoft.KeyVault("):
        return "resolved-key-vault-secret"
    return RESOLVED_EXPRESSIONS[text]


def test_template_defaults_pass_settings_checks():
    known = {s.name for s in settings.SETTINGS}
    env = {n: _deployed_value(n) for n in _template_settings() if n in known}
    loaded = settings.load(env)
    assert loaded.uses_emulators is False
    assert loaded.plan_options()["files_enabled"] is True


def test_no_flex_deprecated_setting():
    assert sorted(FLEX_DEPRECATED_SETTINGS & set(_template_settings())) == []


def test_no_storage_connection_string():
    assert _host_storage_connection() not in _template_settings()


@pytest.mark.parametrize("service", ["blob", "queue", "table"])
def test_task_hub_storage_identity_uri(service):
    name = f"{_host_storage_connection()}__{service}ServiceUri"
    assert name in _template_settings()


def test_api_key_is_key_vault_reference():
    value = _setting_source("ANYRUN_API_KEY")
    assert value.startswith("'@Microsoft.KeyVault(SecretUri=")


def test_api_key_reference_uses_vault_output():
    value = _setting_source("ANYRUN_API_KEY")
    assert "${keyVault.outputs.anyrunApiKeySecretUri}" in value


def _secret_name_variable():
    bicep = load(KEY_VAULT)
    return literal(
        bicep, bicep.body(bicep.declarations("variable")["anyrunApiKeySecretName"])
    )


def test_key_vault_secret_name():
    assert _secret_name_variable() == "ANYRUN-APIKey"


def test_key_vault_secret_uses_name():
    bicep = load(KEY_VAULT)
    (secret,) = bicep.resources("Microsoft.KeyVault/vaults/secrets@")
    names = [bicep.text(v) for v in find_property(bicep, secret, "name")]
    assert names == ["anyrunApiKeySecretName"]


def test_key_vault_secret_uri_uses_name():
    bicep = load(KEY_VAULT)
    output = bicep.declarations("output")["anyrunApiKeySecretUri"]
    assert "secrets/${anyrunApiKeySecretName}" in bicep.text(output)


def test_local_bearer_token_absent():
    assert "LOCAL_BEARER_TOKEN" not in _template_settings()


@pytest.mark.parametrize("setting", SECRET, ids=lambda s: s.name)
def test_secret_setting_is_reference_or_absent(setting):
    if setting.name not in _template_settings():
        return
    assert _setting_source(setting.name).startswith("'@Microsoft.KeyVault(")


def test_function_app_gets_app_settings():
    main = load(MAIN)
    module = main.declarations("module")["functionApp"]
    passed = [main.text(v) for v in find_property(main, module, "appSettings")]
    assert passed == ["appSettings"]


def test_site_builds_settings_from_parameter():
    bicep = load(FUNCTION_APP)
    (site,) = bicep.resources("Microsoft.Web/sites@")
    (value,) = find_property(bicep, site, "appSettings")
    assert "items(appSettings)" in bicep.text(value)


def test_no_separate_app_settings_resource():
    bicep = load(FUNCTION_APP)
    assert bicep.resources("Microsoft.Web/sites/config") == []


def test_no_flex_deprecated_site_property():
    bicep = load(FUNCTION_APP)
    (site,) = bicep.resources("Microsoft.Web/sites@")
    deprecated = {p.lower() for p in FLEX_DEPRECATED_SITE_PROPERTIES}
    keys = [
        bicep.text(node.named_children[0])
        for node in walk(site)
        if node.type == "object_property"
    ]
    assert [key for key in keys if key.lower() in deprecated] == []


def test_plan_is_flex_consumption():
    bicep = load(FUNCTION_APP)
    (plan,) = bicep.resources("Microsoft.Web/serverfarms@")
    (sku,) = find_property(bicep, plan, "sku")
    names = [literal(bicep, v) for v in find_property(bicep, sku, "name")]
    assert names == ["FC1"]


def test_site_is_linux_function_app():
    bicep = load(FUNCTION_APP)
    (site,) = bicep.resources("Microsoft.Web/sites@")
    kinds = [literal(bicep, v) for v in find_property(bicep, site, "kind")]
    assert kinds == ["functionapp,linux"]


def test_runtime_is_python():
    bicep = load(FUNCTION_APP)
    (runtime,) = find_property(bicep, bicep.root, "runtime")
    names = [literal(bicep, v) for v in find_property(bicep, runtime, "name")]
    assert names == ["python"]


def test_python_version_default():
    main = load(MAIN)
    default = main.body(main.declarations("parameter")["pythonVersion"])
    assert literal(main, default) == "3.11"


def test_deployment_storage_uses_identity():
    bicep = load(FUNCTION_APP)
    (deployment,) = find_property(bicep, bicep.root, "deployment")
    types = [literal(bicep, v) for v in find_property(bicep, deployment, "type")]
    assert types == ["blobContainer", "SystemAssignedIdentity"]


def test_identity_is_system_assigned():
    bicep = load(FUNCTION_APP)
    (site,) = bicep.resources("Microsoft.Web/sites@")
    (identity,) = find_property(bicep, site, "identity")
    types = [literal(bicep, v) for v in find_property(bicep, identity, "type")]
    assert types == ["SystemAssigned"]


def test_scale_settings_present():
    bicep = load(FUNCTION_APP)
    (scale,) = find_property(bicep, bicep.root, "scaleAndConcurrency")
    keys = {
        bicep.text(p.named_children[0])
        for p in scale.named_children
        if p.type == "object_property"
    }
    assert {"maximumInstanceCount", "instanceMemoryMB"} <= keys
