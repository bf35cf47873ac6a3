"""docs/deployment.md names what bicep/main.bicep defines."""

import pytest

from .bicep_tree import MAIN, REPO, literal, load

DOC = (REPO / "docs" / "deployment.md").read_text()
MAIN_BICEP = load(MAIN)


@pytest.mark.parametrize("name", sorted(MAIN_BICEP.declarations("parameter")))
def test_parameter_in_table(name):
    assert f"| `{name}` |" in DOC


@pytest.mark.parametrize("name", sorted(MAIN_BICEP.declarations("output")))
def test_output_named(name):
    assert f"`{name}`" in DOC


@pytest.mark.parametrize("name", sorted(MAIN_BICEP.variable_object("appSettings")))
def test_app_setting_named(name):
    short = name.removeprefix("AzureWebJobsStorage")
    assert f"`{name}`" in DOC or f"`{short}`" in DOC


@pytest.mark.parametrize("key", sorted(MAIN_BICEP.variable_object("roleIds")))
def test_role_id_in_table(key):
    role_id = literal(MAIN_BICEP, MAIN_BICEP.variable_object("roleIds")[key])
    assert f"`{role_id}`" in DOC


def test_upload_function_named():
    body = MAIN_BICEP.body(
        MAIN_BICEP.declarations("variable")["uploadEventFunctionName"]
    )
    assert f"`{literal(MAIN_BICEP, body)}`" in DOC


def test_webhook_path_named():
    body = MAIN_BICEP.body(MAIN_BICEP.declarations("variable")["incidentWebhookPath"])
    assert f"/{literal(MAIN_BICEP, body)}" in DOC
