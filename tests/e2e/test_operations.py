"""End to end: list, rerun and purge enrichments through devhost.

The stack runs at time scale 1, so the task hub's creation times are wall-clock
times and a purge cutoff computed from the wall clock applies to them. URL
analyses take URL_OPT_TIMEOUT = 10 s of sandbox time each.
"""

from datetime import datetime, timedelta

import httpx
import pytest

from devhost.stack import LocalStack, load_samples

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# Reuse off: a rerun must submit again, as it does without analysis records.
OPERATIONS_SETTINGS = {"URL_OPT_TIMEOUT": "10", "REUSE_WINDOW_HOURS": "0"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with LocalStack(
        tmp_path_factory.mktemp("operations"),
        time_scale=1,
        app_settings=OPERATIONS_SETTINGS,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def runs(stack):
    """Post every URL sample and wait for all; return name -> instance id."""
    accepted = {}
    for name, body in load_samples(pattern="url-*.json"):
        response = stack.post_incident(body)
        assert response.status_code == 202, response.text
        accepted[name] = response.json()["id"]
    for instance_id in accepted.values():
        assert stack.wait_for(instance_id, timeout=90)["runtimeStatus"] == "Completed"
    return accepted


def call(stack, method, path, *, key=None, **kwargs) -> httpx.Response:
    headers = {"x-functions-key": stack.function_key if key is None else key}
    return httpx.request(
        method,
        f"{stack.url('devhost')}/api/{path}",
        headers=headers,
        timeout=60,
        **kwargs,
    )


def list_all(stack, **params) -> list[dict]:
    """Follow continuation tokens; return every listed enrichment."""
    found, token = [], None
    for _ in range(20):
        query = dict(params)
        if token:
            query["continuationToken"] = token
        response = call(stack, "GET", "incidents", params=query)
        assert response.status_code == 200, response.text
        found += response.json()["incidents"]
        token = response.json()["continuationToken"]
        if token is None:
            return found
    raise AssertionError("the listing did not end after 20 pages")


def task_hub_ids(stack) -> list[str]:
    url = f"{stack.url('devhost')}/runtime/webhooks/durabletask/instances?top=1000"
    return [s["instanceId"] for s in httpx.get(url, timeout=10).json()]


def test_list_shows_enrichments_only(stack, runs):
    listed = list_all(stack)
    assert sorted(item["instanceId"] for item in listed) == sorted(runs.values())
    assert any(":" in instance_id for instance_id in task_hub_ids(stack))


def test_list_items_carry_incident(stack, runs):
    listed = {item["instanceId"]: item for item in list_all(stack)}
    item = listed[runs["url-phishing.json"]]
    assert item["runtimeStatus"] == "Completed"
    assert isinstance(item["incident"]["number"], int)
    assert item["incident"]["title"]
    assert item["createdTime"] <= item["lastUpdatedTime"]
    assert stack.function_key not in item["statusUri"]
    assert (
        httpx.get(
            item["statusUri"],
            headers={"x-functions-key": stack.function_key},
            timeout=30,
        ).json()["instanceId"]
        == item["instanceId"]
    )


def test_list_pages_of_one(stack, runs):
    listed = list_all(stack, top="1", status="Completed")
    ids = [item["instanceId"] for item in listed]
    assert sorted(ids) == sorted(runs.values())


def shifted(timestamp: str, seconds: int) -> str:
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return (moment + timedelta(seconds=seconds)).isoformat()


def test_list_created_window(stack, runs):
    created = [item["createdTime"] for item in list_all(stack)]
    after_newest = {"createdAfter": shifted(max(created), 1)}
    before_oldest = {"createdBefore": shifted(min(created), -1)}
    around = {
        "createdAfter": shifted(min(created), -1),
        "createdBefore": shifted(max(created), 1),
    }
    assert list_all(stack, **after_newest) == []
    assert list_all(stack, **before_oldest) == []
    assert len(list_all(stack, **around)) == len(runs)


def test_list_bad_status_is_400(stack, runs):
    response = call(stack, "GET", "incidents", params={"status": "Finished"})
    assert response.status_code == 400
    assert response.json()["field"] == "status"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "incidents"),
        ("POST", "incidents/purge"),
        ("POST", "incidents/inc-00000000-000000000000/rerun"),
    ],
)
def test_operations_need_function_key(stack, method, path):
    assert call(stack, method, path, key="").status_code == 401


def test_rerun_submits_again(stack, runs):
    source = runs["url-phishing.json"]
    tasks_before = len(stack.emulator_state("anyrun")["tasks"])

    started = call(stack, "POST", f"incidents/{source}/rerun")
    assert started.status_code == 202, started.text
    rerun_id = started.json()["id"]
    assert rerun_id == f"{source}-r1"
    assert started.headers["Location"] == started.json()["statusUri"]

    again = call(stack, "POST", f"incidents/{source}/rerun")
    assert again.status_code == 409
    assert again.json()["rerunId"] == rerun_id
    itself = call(stack, "POST", f"incidents/{rerun_id}/rerun")
    assert itself.status_code == 409
    assert itself.json()["error"] == "not_finished"

    status = stack.wait_for(rerun_id, timeout=90)
    assert status["runtimeStatus"] == "Completed"
    assert [o["verdict"] for o in status["output"]["objects"]] == ["malicious"]
    assert len(stack.emulator_state("anyrun")["tasks"]) == tasks_before + 1


def test_rerun_unknown_is_404(stack):
    response = call(stack, "POST", "incidents/inc-00000000-000000000000/rerun")
    assert response.status_code == 404
    assert response.json()["field"] == "instanceId"


def test_purge_bad_body_is_400(stack, runs):
    response = call(stack, "POST", "incidents/purge", json={"olderThanDays": "all"})
    assert response.status_code == 400
    assert response.json()["field"] == "olderThanDays"


def test_purge_removes_finished(stack, runs):
    """Runs last: it empties the task hub of every finished enrichment."""
    everything = task_hub_ids(stack)
    response = call(stack, "POST", "incidents/purge", json={"olderThanDays": 0})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["purged"] == len(everything)
    assert body["incidents"] == len(runs) + 1
    assert body["moreToPurge"] is False
    assert task_hub_ids(stack) == []
    assert list_all(stack) == []
    assert stack.incident_status(runs["url-mixed.json"]).status_code == 404


def test_no_key_in_logs(stack, runs):
    assert stack.function_key not in stack.logs()
