"""Incident trigger validation and object extraction."""

import copy
import json
from pathlib import Path

import pytest

from enrichment.incident import InvalidIncident, extract, instance_id, object_key

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "incidents"


def sample(name):
    return json.loads((SAMPLES / name).read_text())


def test_phishing_sample_extracts_refanged_url():
    result = extract(sample("url-phishing.json"), 20)
    assert [o["object"] for o in result.objects] == [
        "https://login.microsoftonline.example.net/common/oauth2/authorize?client_id=phish"
    ]
    assert result.incident["number"] == 1042


def test_mixed_sample_dedupes_and_skips():
    result = extract(sample("url-mixed.json"), 20)
    assert [o["object"] for o in result.objects] == [
        "http://update.example.org/flash/install.php",
        "https://www.example.com/",
    ]
    assert [s["object"] for s in result.skipped] == [
        "ftp://files.example.net/pub/invoice.zip",
        "javascript:alert(document.cookie)",
    ]


def test_wrapped_body_is_unwrapped():
    wrapped = sample("url-download-wrapped.json")
    assert extract(wrapped, 20).incident == extract(wrapped["Body"], 20).incident


def test_cap_reports_the_rest():
    result = extract(sample("url-download-wrapped.json"), 1)
    assert len(result.objects) == 1
    assert "MAX_OBJECTS_PER_INCIDENT" in result.skipped[0]["reason"]


def test_instance_id_is_deterministic():
    first = extract(sample("url-mixed.json"), 20)
    second = extract(sample("url-mixed.json"), 20)
    assert instance_id(first.incident, first.object_keys()) == instance_id(
        second.incident, second.object_keys()
    )


def test_instance_id_changes_with_objects():
    body = sample("url-mixed.json")
    before = extract(body, 20)
    body["object"]["properties"]["relatedEntities"].pop(0)
    after = extract(body, 20)
    assert instance_id(before.incident, before.object_keys()) != instance_id(
        after.incident, after.object_keys()
    )


def test_instance_id_ignores_entity_order():
    body = sample("url-mixed.json")
    before = extract(body, 20)
    body["object"]["properties"]["relatedEntities"].reverse()
    after = extract(body, 20)
    assert instance_id(before.incident, before.object_keys()) == instance_id(
        after.incident, after.object_keys()
    )


def test_object_key_stable():
    assert object_key("url", "https://a/") == object_key("url", "https://a/")


def test_empty_entities_are_valid():
    body = sample("url-phishing.json")
    body["object"]["properties"]["relatedEntities"] = []
    result = extract(body, 20)
    assert result.objects == []
    assert result.skipped == []


def mutate(path, value):
    body = sample("url-phishing.json")
    target = body
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "$"),
        ("text", "$"),
        (mutate(["object"], KeyError), "object"),
        (mutate(["object", "id"], KeyError), "object.id"),
        (mutate(["object", "id"], "/subscriptions/x/incidents/1"), "object.id"),
        (mutate(["object", "properties"], KeyError), "object.properties"),
        (mutate(["object", "properties"], []), "object.properties"),
        (mutate(["workspaceId"], KeyError), "workspaceId"),
        (mutate(["workspaceId"], "not-a-guid"), "workspaceId"),
        (mutate(["objectSchemaType"], "Alert"), "objectSchemaType"),
        (
            mutate(["object", "properties", "incidentNumber"], "12"),
            "object.properties.incidentNumber",
        ),
        (
            mutate(["object", "properties", "relatedEntities"], {}),
            "object.properties.relatedEntities",
        ),
        (
            mutate(["object", "properties", "relatedEntities"], ["x"]),
            "object.properties.relatedEntities[0]",
        ),
        (
            mutate(["object", "properties", "relatedEntities"], [{"properties": {}}]),
            "object.properties.relatedEntities[0].kind",
        ),
        (
            mutate(
                ["object", "properties", "relatedEntities"],
                [{"kind": "Url", "properties": {}}],
            ),
            "object.properties.relatedEntities[0].properties.url",
        ),
    ],
)
def test_invalid_body_names_field(body, field):
    with pytest.raises(InvalidIncident) as caught:
        extract(body, 20)
    assert caught.value.field == field
    assert field in str(caught.value)


def test_alert_trigger_body_is_explained():
    body = {"SystemAlertId": "a", "Entities": [{"Type": "url", "Url": "https://a/"}]}
    with pytest.raises(InvalidIncident, match="alert-trigger body"):
        extract(body, 20)


def test_extraction_does_not_modify_input():
    body = sample("url-mixed.json")
    original = copy.deepcopy(body)
    extract(body, 20)
    assert body == original
