"""Replay tests of the enrich_incident parent orchestration through the real SDK."""

import pytest

import settings
from enrichment.results import comment_id
from orchestrators.enrich_incident import child_instance_id, enrich_incident
from tests.replay.history import (
    CALL_SUB_ORCHESTRATOR,
    History,
    action_input,
    flat_actions,
    last_action,
    replay,
)

INSTANCE = "inc-7d3e1f52-aaaa"
INCIDENT = {
    "id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.OperationalInsights/"
    "workspaces/w/providers/Microsoft.SecurityInsights/Incidents/7d3e1f52",
    "name": "7d3e1f52",
    "number": 1042,
    "title": "Phishing",
    "workspace_id": "00000000-0000-0000-0000-000000000002",
    "url": None,
}
OBJECTS = [
    {"kind": "url", "key": "url-a", "object": "https://a.example.net/"},
    {"kind": "url", "key": "url-b", "object": "https://b.example.net/"},
]


def result(key, obj, verdict="malicious", iocs=True):
    return {
        "key": key,
        "kind": "url",
        "object": obj,
        "status": "done",
        "task_id": f"t-{key}",
        "task_url": f"https://app.any.run/tasks/t-{key}",
        "verdict": verdict,
        "score": 100,
        "tags": ["phishing"],
        "iocs": [],
        "indicator_iocs": [
            {"type": "domain", "value": "a.example.net", "reputation": "malicious"}
        ]
        if iocs
        else [],
    }


@pytest.fixture
def history():
    plan = {
        "incident": INCIDENT,
        "objects": OBJECTS,
        "skipped": [
            {
                "kind": "url",
                "object": "ftp://x",
                "reason": "scheme 'ftp' is not analysed",
            }
        ],
        "options": settings.load({"ANYRUN_API_KEY": "k"}).plan_options(),
    }
    return History("enrich_incident", plan, instance_id=INSTANCE)


def children_done(history, first=None, second=None):
    history.sub_orchestration(0, "analyze_url", child_instance_id(INSTANCE, "url-a"))
    history.sub_orchestration(1, "analyze_url", child_instance_id(INSTANCE, "url-b"))
    history.episode()
    history.sub_completed(0, first or result("url-a", OBJECTS[0]["object"]))
    history.episode()
    history.sub_completed(
        1, second or result("url-b", OBJECTS[1]["object"], "clean", False)
    )


def test_fans_out_one_child_per_object(history):
    actions = flat_actions(replay(enrich_incident, history))
    assert [a["actionType"] for a in actions] == [CALL_SUB_ORCHESTRATOR] * 2
    assert [a["instanceId"] for a in actions] == [
        f"{INSTANCE}:url-a",
        f"{INSTANCE}:url-b",
    ]


def test_child_input_carries_options(history):
    child = action_input(flat_actions(replay(enrich_incident, history))[0])
    assert child["object"] == "https://a.example.net/"
    assert child["options"]["url_options"]["env_os"] == "windows"


def test_indicators_written_first(history):
    children_done(history)
    action = last_action(replay(enrich_incident, history))
    assert action["functionName"] == "upload_indicators"
    assert action_input(action)["workspace_id"] == INCIDENT["workspace_id"]


def test_labels_after_indicators(history):
    children_done(history)
    history.activity(2, "upload_indicators", {"uploaded": 1, "failed": 0, "errors": []})
    action = last_action(replay(enrich_incident, history))
    assert action["functionName"] == "update_incident_labels"
    assert action_input(action)["labels"] == [
        "ANY.RUN",
        "ANY.RUN: malicious",
        "ANY.RUN: phishing",
    ]


def test_comment_id_is_derived(history):
    children_done(history)
    history.activity(2, "upload_indicators", {"uploaded": 1, "failed": 0, "errors": []})
    history.activity(
        3, "update_incident_labels", {"status": "updated", "labels": [], "added": []}
    )
    action = last_action(replay(enrich_incident, history))
    payload = action_input(action)
    assert action["functionName"] == "write_incident_comment"
    assert payload["comment_id"] == comment_id(INSTANCE)
    assert all("indicator_iocs" not in r for r in payload["results"])


def test_output_after_writes(history):
    children_done(history)
    history.activity(2, "upload_indicators", {"uploaded": 1, "failed": 0, "errors": []})
    history.activity(
        3, "update_incident_labels", {"status": "updated", "labels": [], "added": []}
    )
    history.activity(
        4, "write_incident_comment", {"status": "written", "comment_id": "c"}
    )
    state = replay(enrich_incident, history)
    assert state["isDone"] is True
    assert [o["verdict"] for o in state["output"]["objects"]] == ["malicious", "clean"]
    assert state["output"]["indicators"]["uploaded"] == 1
    assert state["output"]["skipped"][0]["object"] == "ftp://x"


def test_failed_child_becomes_failed_result(history):
    history.sub_orchestration(0, "analyze_url", child_instance_id(INSTANCE, "url-a"))
    history.sub_orchestration(1, "analyze_url", child_instance_id(INSTANCE, "url-b"))
    history.episode()
    history.sub_failed(0, "orchestrator crashed")
    history.episode()
    history.sub_completed(1, result("url-b", OBJECTS[1]["object"]))
    action = last_action(replay(enrich_incident, history))
    assert action["functionName"] == "upload_indicators"
    results = action_input(action)["results"]
    assert results[0]["status"] == "failed"
    assert results[1]["status"] == "done"


def test_no_objects_completes_without_writes():
    plan = {
        "incident": INCIDENT,
        "objects": [],
        "skipped": [],
        "options": settings.load({"ANYRUN_API_KEY": "k"}).plan_options(),
    }
    state = replay(
        enrich_incident, History("enrich_incident", plan, instance_id=INSTANCE)
    )
    assert state["isDone"] is True
    assert flat_actions(state) == []


def test_clean_only_skips_indicators(history):
    clean_a = result("url-a", OBJECTS[0]["object"], "clean", False)
    children_done(
        history,
        first=clean_a,
        second=result("url-b", OBJECTS[1]["object"], "clean", False),
    )
    action = last_action(replay(enrich_incident, history))
    assert action["functionName"] == "update_incident_labels"
