"""End to end: every URL sample through devhost, the emulators and Azurite."""

import json
from collections import Counter

import httpx
import pytest

from devhost.stack import LocalStack, load_samples
from enrichment.incident import extract

pytestmark = pytest.mark.e2e

PHISHING_URL = (
    "https://login.microsoftonline.example.net/common/oauth2/authorize?client_id=phish"
)
EXPECTED = {
    "url-phishing.json": {PHISHING_URL: ("malicious", 100)},
    "url-mixed.json": {
        "http://update.example.org/flash/install.php": ("suspicious", 65),
        "https://www.example.com/": ("clean", 0),
    },
    "url-download-wrapped.json": {
        "http://files.example.net/invoice-2291.zip": ("malicious", 88),
        "http://update.example.org/flash/install.php": ("suspicious", 65),
    },
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with LocalStack(tmp_path_factory.mktemp("stack"), time_scale=120) as running:
        yield running


@pytest.fixture(scope="module")
def runs(stack):
    """Post every URL sample once and wait for all of them; return their details."""
    accepted = {}
    for name, body in load_samples(pattern="url-*.json"):
        response = stack.post_incident(body)
        assert response.status_code == 202, response.text
        accepted[name] = {"body": body, "id": response.json()["id"], "post": response}
    for run in accepted.values():
        run["status"] = stack.wait_for(run["id"], timeout=120)
    return accepted


def sentinel_incident(stack, body):
    incident_id = extract(body, 20).incident["id"].lower()
    for incident in stack.emulator_state("sentinel")["incidents"]:
        if incident["id"].lower() == incident_id:
            return incident
    raise AssertionError(f"incident {incident_id} not in the Sentinel emulator")


def test_every_sample_completes(runs):
    assert {name: run["status"]["runtimeStatus"] for name, run in runs.items()} == {
        name: "Completed" for name in runs
    }


def test_accepted_answer_has_status_link(runs):
    body = runs["url-phishing.json"]["post"].json()
    assert body["created"] is True
    assert body["statusUri"].endswith(f"/api/incidents/{body['id']}")
    assert "statusQueryGetUri" not in body
    assert "terminatePostUri" not in body


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdicts_and_scores(runs, name):
    objects = runs[name]["status"]["output"]["objects"]
    found = {o["object"]: (o["verdict"], o["score"]) for o in objects}
    assert found == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_task_links_match_sandbox(stack, runs, name):
    tasks = {t["uuid"] for t in stack.emulator_state("anyrun")["tasks"]}
    for item in runs[name]["status"]["output"]["objects"]:
        assert item["task_url"].startswith("https://app.any.run/tasks/")
        assert item["task_url"].rsplit("/", 1)[1] in tasks


def test_one_submission_per_object(stack, runs):
    """install.php is in two incidents and submitted once: the second reuses it."""
    submitted = Counter(
        t["obj"]["url"] for t in stack.emulator_state("anyrun")["tasks"]
    )
    expected = Counter({url for urls in EXPECTED.values() for url in urls})
    assert submitted == expected


def test_shared_object_has_same_task(runs):
    url = "http://update.example.org/flash/install.php"
    links = {
        o["task_url"]
        for run in runs.values()
        for o in run["status"]["output"]["objects"]
        if o["object"] == url
    }
    assert len(links) == 1


def test_one_comment_per_incident(stack, runs):
    for run in runs.values():
        assert len(sentinel_incident(stack, run["body"])["comments"]) == 1


def test_comment_has_table_and_skips(stack, runs):
    message = sentinel_incident(stack, runs["url-mixed.json"]["body"])["comments"][0][
        "message"
    ]
    assert "<table>" in message
    assert "hxxp://update[.]example[.]org/flash/install.php" in message
    assert "https://app.any.run/tasks/" in message
    assert "scheme &#x27;ftp&#x27; is not analysed" in message
    assert len(message) <= 30_000


def test_labels_merged_with_existing(stack, runs):
    labels = sentinel_incident(stack, runs["url-phishing.json"]["body"])["labels"]
    names = [label["labelName"] for label in labels]
    assert "phishing-triage" in names
    assert "ANY.RUN: malicious" in names
    assert "ANY.RUN: phishing" in names


def test_auto_assigned_label_kept(stack, runs):
    labels = sentinel_incident(stack, runs["url-download-wrapped.json"]["body"])[
        "labels"
    ]
    assert "proxy" in [label["labelName"] for label in labels]


def test_clean_incident_has_no_malicious_label(stack, runs):
    labels = sentinel_incident(stack, runs["url-mixed.json"]["body"])["labels"]
    assert "ANY.RUN: malicious" not in [label["labelName"] for label in labels]


def test_indicators_written_and_counted(stack, runs):
    indicators = stack.emulator_state("sentinel")["indicators"]
    stored = {key for per_workspace in indicators.values() for key in per_workspace}
    for run in runs.values():
        written = run["status"]["output"]["indicators"]
        assert written["failed"] == 0
        assert written["uploaded"] > 0
    assert len(stored) > 0


def test_indicators_are_malicious_or_suspicious(stack, runs):
    indicators = stack.emulator_state("sentinel")["indicators"]
    for per_workspace in indicators.values():
        for indicator in per_workspace.values():
            assert indicator["sourcesystem"] == "ANY.RUN Sandbox"


def test_status_lists_objects_and_skips(stack, runs):
    status = stack.incident_status(runs["url-mixed.json"]["id"]).json()
    states = Counter(item["state"] for item in status["objects"])
    assert states == {"done": 2, "skipped": 2}
    skipped = [item for item in status["objects"] if item["state"] == "skipped"]
    assert all(item["reason"] for item in skipped)


def test_repost_starts_nothing(stack, runs):
    before = len(stack.emulator_state("anyrun")["tasks"])
    response = stack.post_incident(runs["url-phishing.json"]["body"])
    assert response.status_code == 200
    assert response.json()["created"] is False
    assert len(stack.emulator_state("anyrun")["tasks"]) == before


def instance_count(stack):
    url = f"{stack.url('devhost')}/runtime/webhooks/durabletask/instances"
    return len(httpx.get(url, timeout=10).json())


@pytest.mark.parametrize(
    ("content", "content_type", "status", "field"),
    [
        (b"{not json", "application/json", 400, "$"),
        (b'{"object": {}}', "application/json", 400, "object.id"),
        (b"[]", "application/json", 400, "$"),
        (b'{"object": 1}', "text/plain", 415, "Content-Type"),
    ],
)
def test_invalid_body_starts_nothing(stack, runs, content, content_type, status, field):
    before = instance_count(stack)
    response = httpx.post(
        f"{stack.url('devhost')}/api/incidents",
        content=content,
        headers={"content-type": content_type, "x-functions-key": stack.function_key},
        timeout=30,
    )
    assert response.status_code == status
    assert response.json()["field"] == field
    assert instance_count(stack) == before


def test_missing_function_key_is_401(stack, runs):
    before = instance_count(stack)
    response = stack.post_incident(runs["url-phishing.json"]["body"], key="")
    assert response.status_code == 401
    assert instance_count(stack) == before


def test_wrong_function_key_is_401(stack, runs):
    response = stack.post_incident(runs["url-phishing.json"]["body"], key="not-the-key")
    assert response.status_code == 401


def test_status_unknown_instance_404(stack):
    assert stack.incident_status("inc-00000000-unknown").status_code == 404


def test_no_secret_in_logs_statuses_comments(stack, runs):
    secrets = [stack.anyrun_key, stack.bearer_token, stack.function_key]
    texts = [stack.logs(), json.dumps(stack.emulator_state("sentinel"))]
    texts += [
        json.dumps(stack.incident_status(run["id"]).json()) for run in runs.values()
    ]
    texts += [
        json.dumps(stack.emulator_requests(name)) for name in ("anyrun", "sentinel")
    ]
    for secret in secrets:
        assert all(secret not in text for text in texts)


def test_status_rejects_sub_orchestration_id(stack, runs):
    child = runs["url-phishing.json"]["id"] + ":url-0123456789abcdef"
    response = stack.incident_status(child)
    assert response.status_code == 400
    assert response.json()["field"] == "instanceId"
