"""End to end: the file samples through devhost, the Defender emulator and Azurite.

The Linux samples run the real bash upload script, whose PUT goes through the
SAS URL into Azurite. The emulator uploads the Windows sample the way the
PowerShell script would. The offline host never uploads.
"""

import base64
import json
import re
from collections import Counter

import httpx
import pytest

from devhost.stack import LocalStack, load_samples
from enrichment.incident import extract

pytestmark = pytest.mark.e2e

EICAR_SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
OFFLINE_DEVICE = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b"
DONE_FILES = {
    "file-linux-quarantined.json": ("/home/azureuser/eicar.com", "lx-0042"),
    "file-linux-hunting.json": ("update.sh", "lx-0077"),
    "file-windows-invoice.json": (
        "C:\\Users\\j.doe\\Downloads\\invoice-2291.exe",
        "ws-0042.corp.example.com",
    ),
}
SIGNATURE = re.compile(r"(?i)sig=([^&\s\"'<>\\]+)")
ENVELOPE = re.compile(r"v1\.([A-Za-z0-9_-]{20,})")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with LocalStack(tmp_path_factory.mktemp("files"), time_scale=120) as running:
        yield running


@pytest.fixture(scope="module")
def runs(stack):
    """Post every file sample once and wait for all of them."""
    accepted = {}
    for name, body in load_samples(pattern="file-*.json"):
        response = stack.post_incident(body)
        assert response.status_code == 202, response.text
        accepted[name] = {"body": body, "id": response.json()["id"]}
    for run in accepted.values():
        run["status"] = stack.wait_for(run["id"], timeout=150)
    return accepted


def defender(stack, path):
    response = httpx.get(
        f"{stack.url('defender')}{path}",
        headers={"Authorization": f"Bearer {stack.bearer_token}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def file_result(run):
    return [o for o in run["status"]["output"]["objects"] if o["kind"] == "file"][0]


def sentinel_comment(stack, body):
    incident_id = extract(body, 20).incident["id"].lower()
    for incident in stack.emulator_state("sentinel")["incidents"]:
        if incident["id"].lower() == incident_id:
            return incident["comments"][0]["message"]
    raise AssertionError(f"incident {incident_id} not in the Sentinel emulator")


def unredacted_signatures(text):
    """Return SAS signatures in `text`, also inside base64url script arguments."""
    found = [m for m in SIGNATURE.findall(text) if m != "REDACTED"]
    for encoded in ENVELOPE.findall(text):
        padded = encoded + "=" * (-len(encoded) % 4)
        try:
            decoded = base64.urlsafe_b64decode(padded).decode("utf-8", "replace")
        except ValueError:
            continue
        found += [m for m in SIGNATURE.findall(decoded) if m != "REDACTED"]
    return found


def test_every_file_sample_completes(runs):
    statuses = {name: run["status"]["runtimeStatus"] for name, run in runs.items()}
    assert statuses == {name: "Completed" for name in runs}


@pytest.mark.parametrize("name", sorted(DONE_FILES))
def test_file_verdict_with_task_link(stack, runs, name):
    result = file_result(runs[name])
    tasks = {t["uuid"] for t in stack.emulator_state("anyrun")["tasks"]}
    assert result["status"] == "done", result
    assert result["verdict"] in ("malicious", "suspicious", "clean")
    assert isinstance(result["score"], int)
    assert result["task_url"].rsplit("/", 1)[1] in tasks


@pytest.mark.parametrize("name", sorted(DONE_FILES))
def test_file_result_names_host(runs, name):
    path, host = DONE_FILES[name]
    result = file_result(runs[name])
    assert result["object"].endswith(path)
    assert result["host"] == host


def test_eicar_is_malicious(runs):
    result = file_result(runs["file-linux-quarantined.json"])
    assert result["verdict"] == "malicious"
    assert result["sha256"] == EICAR_SHA256


def test_submitted_file_matches_endpoint_file(stack, runs):
    tasks = stack.emulator_state("anyrun")["tasks"]
    files = [t for t in tasks if t["obj"].get("sha256")]
    assert EICAR_SHA256 in {t["obj"]["sha256"] for t in files}


def test_one_submission_per_object(stack, runs):
    tasks = stack.emulator_state("anyrun")["tasks"]
    keys = Counter(t["obj"].get("sha256") or t["obj"].get("url") for t in tasks)
    assert keys and max(keys.values()) == 1
    done = sum(
        1
        for run in runs.values()
        for item in run["status"]["output"]["objects"]
        if item.get("task_url")
    )
    assert len(tasks) == done


def test_upload_container_empty(stack, runs):
    assert stack.upload_blobs() == []


def test_offline_host_times_out_with_reason(runs):
    result = file_result(runs["file-offline-host.json"])
    assert result["status"] == "timed_out"
    assert "did not upload" in result["reason"]
    assert "cancelled" in result["reason"]


def test_offline_action_cancelled(stack, runs):
    actions = defender(
        stack, f"/api/machineactions?$filter=machineId eq '{OFFLINE_DEVICE}'"
    )["value"]
    assert [action["status"] for action in actions] == ["Cancelled"]


def test_offline_reason_in_comment(stack, runs):
    message = sentinel_comment(stack, runs["file-offline-host.json"]["body"])
    assert "did not upload" in message
    assert "setup-helper.exe" in message


def test_file_row_in_comment(stack, runs):
    message = sentinel_comment(stack, runs["file-linux-quarantined.json"]["body"])
    assert "eicar.com" in message
    assert file_result(runs["file-linux-quarantined.json"])["task_url"] in message


def test_alerts_commented_once(stack, runs):
    for run in runs.values():
        for alert in extract(run["body"], 20).alerts:
            comments = defender(stack, f"/api/alerts/{alert['id']}")["comments"]
            ours = [c for c in comments if "ANY.RUN" in (c.get("comment") or "")]
            assert len(ours) == 1, alert["id"]


def test_alert_comment_has_verdict(stack, runs):
    body = runs["file-linux-quarantined.json"]["body"]
    [alert] = extract(body, 20).alerts
    comments = defender(stack, f"/api/alerts/{alert['id']}")["comments"]
    text = "\n".join(c.get("comment") or "" for c in comments)
    assert "malicious" in text.lower()
    assert "https://app.any.run/tasks/" in text


def test_status_shows_file_objects(stack, runs):
    status = stack.incident_status(runs["file-linux-hunting.json"]["id"]).json()
    files = [item for item in status["objects"] if item["kind"] == "file"]
    assert [item["state"] for item in files] == ["done"]


def test_repost_starts_nothing(stack, runs):
    before = len(stack.emulator_state("anyrun")["tasks"])
    response = stack.post_incident(runs["file-linux-quarantined.json"]["body"])
    assert response.status_code == 200
    assert len(stack.emulator_state("anyrun")["tasks"]) == before


def test_no_sas_signature_anywhere(stack, runs):
    texts = {"logs": stack.logs()}
    for name, run in runs.items():
        texts[f"status {name}"] = json.dumps(stack.incident_status(run["id"]).json())
        texts[f"comment {name}"] = sentinel_comment(stack, run["body"])
    for name in ("anyrun", "sentinel", "defender"):
        texts[f"requests {name}"] = json.dumps(stack.emulator_requests(name))
    actions = defender(stack, "/api/machineactions")["value"]
    texts["actions"] = json.dumps(actions)
    for action in actions:
        if action["status"] not in ("Succeeded", "Failed"):
            continue
        link = defender(
            stack,
            f"/api/machineactions/{action['id']}"
            "/GetLiveResponseResultDownloadLink(index=0)",
        )["value"]
        texts[f"script output {action['id']}"] = httpx.get(link, timeout=10).text
    assert any(where.startswith("script output") for where in texts)
    leaks = {where: unredacted_signatures(text) for where, text in texts.items()}
    assert {where: found for where, found in leaks.items() if found} == {}


def test_no_secret_in_logs(stack, runs):
    secrets = [stack.anyrun_key, stack.bearer_token, stack.function_key]
    text = stack.logs()
    for secret in secrets:
        assert secret not in text
