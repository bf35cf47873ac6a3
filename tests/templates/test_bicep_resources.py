"""Security and wiring properties of the resources in the Bicep templates."""

import re

import pytest

from .bicep_tree import (
    MAIN,
    MODULES,
    find_property,
    literal,
    load,
    object_properties,
    string_items,
    walk,
)

STORAGE = MODULES / "storage.bicep"
KEY_VAULT = MODULES / "keyvault.bicep"
EVENT_GRID = MODULES / "eventgrid.bicep"
PLAYBOOK = MODULES / "playbook.bicep"
AUTOMATION_RULE = MODULES / "automation-rule.bicep"
MONITORING = MODULES / "monitoring.bicep"

# Built-in Azure role definition ids (Azure built-in roles reference).
BUILT_IN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "db58b8e5-c6ad-4a2a-8342-4190687cbf4a": "Storage Blob Delegator",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "3e150937-b8fe-4cfb-8069-0eaf05ecd056": "Microsoft Sentinel Responder",
    "ab8e14d6-4a74-4a29-9ba8-549422addade": "Microsoft Sentinel Contributor",
    "8d289c81-5878-46d4-8554-54e1e3d8b5cb": "Microsoft Sentinel Reader",
    "f4c81013-99ee-4d62-a7ee-b3f1f648599a": "Microsoft Sentinel Automation Contributor",
}

# Roles the connector needs, with the module that assigns them.
REQUIRED_ROLES = [
    ("Storage Blob Data Owner", "appAccess"),
    ("Storage Blob Delegator", "appAccess"),
    ("Storage Queue Data Contributor", "appAccess"),
    ("Storage Table Data Contributor", "appAccess"),
    ("Key Vault Secrets User", "appAccess"),
    ("Monitoring Metrics Publisher", "appAccess"),
    ("Microsoft Sentinel Responder", "appWorkspaceAccess"),
    ("Microsoft Sentinel Contributor", "appWorkspaceAccess"),
    ("Microsoft Sentinel Reader", "playbook"),
    ("Microsoft Sentinel Automation Contributor", "playbook"),
]

GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _single(bicep, node, key):
    values = find_property(bicep, node, key)
    assert len(values) == 1, f"expected one {key!r}, found {len(values)}"
    return values[0]


def _storage_account():
    bicep = load(STORAGE)
    (account,) = bicep.resources("Microsoft.Storage/storageAccounts@")
    return bicep, account


# Storage account ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("allowBlobPublicAccess", False),
        ("allowSharedKeyAccess", False),
        ("minimumTlsVersion", "TLS1_2"),
        ("supportsHttpsTrafficOnly", True),
    ],
)
def test_storage_account_property(key, expected):
    bicep, account = _storage_account()
    assert literal(bicep, _single(bicep, account, key)) == expected


@pytest.mark.parametrize("container", ["deploymentContainer", "uploadContainer"])
def test_container_is_private(container):
    bicep = load(STORAGE)
    body = bicep.body(bicep.declarations("resource")[container])
    assert literal(bicep, _single(bicep, body, "publicAccess")) == "None"


def _lifecycle_rule():
    bicep = load(STORAGE)
    (policy,) = bicep.resources("Microsoft.Storage/storageAccounts/managementPolicies@")
    rules = _single(bicep, policy, "rules")
    (rule,) = rules.named_children
    return bicep, rule


def test_lifecycle_rule_enabled():
    bicep, rule = _lifecycle_rule()
    assert literal(bicep, _single(bicep, rule, "enabled")) is True


def test_lifecycle_deletes_after_one_day():
    bicep, rule = _lifecycle_rule()
    delete = _single(bicep, rule, "delete")
    age = _single(bicep, delete, "daysAfterCreationGreaterThan")
    assert literal(bicep, age) == 1


def test_lifecycle_matches_upload_container():
    bicep, rule = _lifecycle_rule()
    prefixes = string_items(bicep, _single(bicep, rule, "prefixMatch"))
    assert prefixes == ["${uploadContainerName}/"]


# Key Vault and monitoring -------------------------------------------------------------


def test_key_vault_uses_rbac():
    bicep = load(KEY_VAULT)
    (vault,) = bicep.resources("Microsoft.KeyVault/vaults@")
    value = _single(bicep, vault, "enableRbacAuthorization")
    assert literal(bicep, value) is True


def test_api_key_parameter_is_secure():
    main = load(MAIN)
    decorators = main.decorator_names(main.declarations("parameter")["anyrunApiKey"])
    assert "secure" in decorators


def test_app_insights_on_workspace():
    bicep = load(MONITORING)
    (component,) = bicep.resources("Microsoft.Insights/components@")
    value = _single(bicep, component, "WorkspaceResourceId")
    assert bicep.text(value) == "logAnalytics.id"


def test_app_insights_requires_entra_auth():
    bicep = load(MONITORING)
    (component,) = bicep.resources("Microsoft.Insights/components@")
    assert literal(bicep, _single(bicep, component, "DisableLocalAuth")) is True


def test_app_settings_use_entra_telemetry():
    main = load(MAIN)
    value = main.variable_object("appSettings")[
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
    ]
    assert literal(main, value) == "Authorization=AAD"


# Event Grid ---------------------------------------------------------------------------


def _event_subscription():
    bicep = load(EVENT_GRID)
    (subscription,) = bicep.resources(
        "Microsoft.EventGrid/systemTopics/eventSubscriptions@"
    )
    return bicep, subscription


def test_system_topic_type():
    bicep = load(EVENT_GRID)
    (topic,) = bicep.resources("Microsoft.EventGrid/systemTopics@")
    value = _single(bicep, topic, "topicType")
    assert literal(bicep, value) == "Microsoft.Storage.StorageAccounts"


def test_event_destination_is_function():
    bicep, subscription = _event_subscription()
    value = _single(bicep, subscription, "endpointType")
    assert literal(bicep, value) == "AzureFunction"


def test_event_destination_resource_id():
    bicep, subscription = _event_subscription()
    value = _single(bicep, subscription, "resourceId")
    assert bicep.text(value) == "'${functionAppId}/functions/${functionName}'"


def test_event_types_blob_created_only():
    bicep, subscription = _event_subscription()
    types = string_items(bicep, _single(bicep, subscription, "includedEventTypes"))
    assert types == ["Microsoft.Storage.BlobCreated"]


def test_event_subject_is_upload_container():
    bicep, subscription = _event_subscription()
    value = _single(bicep, subscription, "subjectBeginsWith")
    expected = "'/blobServices/default/containers/${uploadContainerName}/blobs/'"
    assert bicep.text(value) == expected


def test_event_grid_gets_upload_container():
    main = load(MAIN)
    module = main.body(main.declarations("module")["eventGrid"])
    value = _single(main, module, "uploadContainerName")
    assert main.text(value) == "storage.outputs.uploadContainerName"


@pytest.mark.parametrize("module", ["eventGrid", "playbook"])
def test_code_dependent_module_is_gated(module):
    main = load(MAIN)
    (condition,) = [
        n
        for n in main.declarations("module")[module].named_children
        if n.type == "if_statement"
    ]
    assert "appCodeDeployed" in main.text(condition.named_children[0])


# Playbook -----------------------------------------------------------------------------


def _playbook():
    bicep = load(PLAYBOOK)
    (workflow,) = bicep.resources("Microsoft.Logic/workflows@")
    return bicep, workflow


def test_playbook_trigger_is_sentinel_incident():
    bicep, workflow = _playbook()
    trigger = _single(bicep, workflow, "Microsoft_Sentinel_incident")
    assert literal(bicep, _single(bicep, trigger, "path")) == "/incident-creation"


def test_sentinel_connection_uses_managed_identity():
    bicep, workflow = _playbook()
    authentication = _single(bicep, workflow, "authentication")
    value = _single(bicep, authentication, "type")
    assert literal(bicep, value) == "ManagedServiceIdentity"


def test_playbook_has_managed_identity():
    bicep, workflow = _playbook()
    identity = object_properties(bicep, _single(bicep, workflow, "identity"))
    assert literal(bicep, identity["type"]) == "SystemAssigned"


def test_function_key_is_secure_string():
    bicep, workflow = _playbook()
    definition = _single(bicep, workflow, "definition")
    parameters = object_properties(bicep, _single(bicep, definition, "parameters"))
    key_type = object_properties(bicep, parameters["functionKey"])["type"]
    assert literal(bicep, key_type) == "SecureString"


def test_function_key_read_with_list_keys():
    bicep, workflow = _playbook()
    values = [bicep.text(v) for v in find_property(bicep, workflow, "functionKey")]
    assert any("listKeys(" in v and "/host/default" in v for v in values)


def _http_action():
    bicep, workflow = _playbook()
    return bicep, _single(bicep, workflow, "Post_incident_to_connector")


def test_http_action_posts_trigger_body():
    bicep, action = _http_action()
    assert literal(bicep, _single(bicep, action, "body")) == "@triggerBody()"


def test_http_action_sends_function_key_header():
    bicep, action = _http_action()
    value = _single(bicep, action, "x-functions-key")
    assert "functionKey" in bicep.text(value)


def test_http_action_hides_inputs_and_outputs():
    bicep, action = _http_action()
    secure = string_items(bicep, _single(bicep, action, "properties"))
    assert sorted(secure) == ["inputs", "outputs"]


def test_http_action_does_not_poll_status():
    bicep, action = _http_action()
    value = _single(bicep, action, "operationOptions")
    assert literal(bicep, value) == "DisableAsyncPattern"


# Automation rule ----------------------------------------------------------------------


def _automation_rule():
    bicep = load(AUTOMATION_RULE)
    (rule,) = bicep.resources("Microsoft.SecurityInsights/automationRules@")
    return bicep, rule


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("triggersOn", "Incidents"),
        ("triggersWhen", "Created"),
        ("actionType", "RunPlaybook"),
    ],
)
def test_automation_rule_property(key, expected):
    bicep, rule = _automation_rule()
    assert literal(bicep, _single(bicep, rule, key)) == expected


def test_automation_rule_switch_is_parameter():
    bicep, rule = _automation_rule()
    assert bicep.text(_single(bicep, rule, "isEnabled")) == "isEnabled"


def test_automation_rule_enabled_from_main():
    main = load(MAIN)
    module = main.body(main.declarations("module")["automationRule"])
    assert main.text(_single(main, module, "isEnabled")) == "automationRuleEnabled"


# Role assignments ---------------------------------------------------------------------


def _role_table():
    main = load(MAIN)
    return main, main.variable_object("roleIds")


def _role_key(name):
    main, table = _role_table()
    keys = [k for k, v in table.items() if BUILT_IN_ROLES.get(literal(main, v)) == name]
    assert len(keys) == 1, f"{name} is not in roleIds of main.bicep exactly once"
    return keys[0]


@pytest.mark.parametrize("key", sorted(_role_table()[1]))
def test_role_id_is_known_built_in_role(key):
    main, table = _role_table()
    assert literal(main, table[key]) in BUILT_IN_ROLES


@pytest.mark.parametrize("key", sorted(_role_table()[1]))
def test_role_id_comment_names_role(key):
    main, table = _role_table()
    value = table[key]
    line = main.source.splitlines()[value.start_point[0]].decode()
    assert line.endswith(f"// {BUILT_IN_ROLES[literal(main, value)]}")


@pytest.mark.parametrize(("role", "module"), REQUIRED_ROLES)
def test_required_role_assigned(role, module):
    main = load(MAIN)
    body = main.body(main.declarations("module")[module])
    references = {main.text(n) for n in walk(body) if n.type == "member_expression"}
    assert f"roleIds.{_role_key(role)}" in references


@pytest.mark.parametrize("path", sorted(MODULES.glob("*.bicep")), ids=lambda p: p.name)
def test_modules_hold_no_role_guid(path):
    """Role ids live in main.bicep's roleIds, where each one is named."""
    assert GUID.findall(path.read_text()) == []


def _role_assignments(path):
    bicep = load(path)
    return bicep, bicep.resources("Microsoft.Authorization/roleAssignments@")


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(MODULES.glob("*.bicep")) if _role_assignments(p)[1]],
    ids=lambda p: p.name,
)
def test_role_assignment_principal_type(path):
    bicep, assignments = _role_assignments(path)
    types = [literal(bicep, _single(bicep, a, "principalType")) for a in assignments]
    assert set(types) == {"ServicePrincipal"}
