"""The operator endpoints against devhost's management API, in-process.

A stub app replaces the connector's orchestrations: its
`enrich_incident` and `analyze_url` wait for a `finish` event, so each test
sets every instance's status exactly. The endpoints talk to devhost through
the SDK's DurableOrchestrationClient, as they do to the Functions host.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import azure.durable_functions as df
import azure.functions as func
import pytest
from azure.durable_functions import DurableOrchestrationClient
from azure.durable_functions.models.utils import http_utils

import operations
import settings
from devhost import DevHostServer, Engine, VirtualClock
from operations import handlers, taskhub

KEY = "secret-function-key"
BASE = "https://func.example.net/api/incidents"
START = datetime(2025, 3, 1, tzinfo=UTC)
JSON = "application/json"
pytestmark = pytest.mark.timeout(60)


def stub_app() -> df.DFApp:
    app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.orchestration_trigger(context_name="context", orchestration="enrich_incident")
    def enrich_incident(context: df.DurableOrchestrationContext):
        outcome = yield context.wait_for_external_event("finish")
        if outcome == "fail":
            raise RuntimeError("stub enrichment failed")
        return outcome

    @app.orchestration_trigger(context_name="context", orchestration="analyze_url")
    def analyze_url(context: df.DurableOrchestrationContext):
        return (yield context.wait_for_external_event("finish"))

    return app


def plan(number: int, objects: int = 2) -> dict:
    return {
        "incident": {"id": f"/incidents/{number}", "number": number, "title": "T"},
        "objects": [
            {"kind": "url", "key": f"url-{i}", "object": f"https://{i}.example"}
            for i in range(objects)
        ],
        "skipped": [],
        "alerts": [],
        "options": {"label_prefix": "stored"},
    }


class Hub:
    """Creates and finishes stub instances in the engine."""

    def __init__(self, engine: Engine, clock: VirtualClock):
        self.engine = engine
        self.clock = clock

    def enrichment(self, instance_id: str, number: int = 1, objects: int = 2) -> str:
        self.engine.start_new(
            "enrich_incident", plan(number, objects), instance_id=instance_id
        )
        for index in range(objects):
            self.engine.start_new(
                "analyze_url", {"n": index}, instance_id=f"{instance_id}:url-{index}"
            )
        self.engine.process_messages()
        return instance_id

    def finish(self, instance_id: str, outcome: str = "done") -> None:
        self.engine.raise_event(instance_id, "finish", json.dumps(outcome))
        self.engine.process_messages()

    def finish_all(self, parent_id: str, outcome: str = "done") -> None:
        for status in self.statuses(prefix=f"{parent_id}:"):
            self.finish(status["instanceId"])
        self.finish(parent_id, outcome)

    def statuses(self, prefix: str) -> list[dict]:
        found, _ = self.engine.query(prefix=prefix)
        return found

    def status(self, instance_id: str) -> str | None:
        status = self.engine.get_status(instance_id)
        return status["runtimeStatus"] if status else None


@pytest.fixture
def clock():
    return VirtualClock(START)


@pytest.fixture
async def server(tmp_path, clock):
    engine = Engine(stub_app(), tmp_path / "hub", clock=clock)
    server = DevHostServer(engine, function_key=KEY, host="127.0.0.1", port=0)
    await server.start()
    yield server
    await server.stop()
    await http_utils._close_session()
    engine.close(timeout=5)


@pytest.fixture
def hub(server, clock) -> Hub:
    return Hub(server.engine, clock)


@pytest.fixture
def client(server) -> DurableOrchestrationClient:
    return DurableOrchestrationClient(server.client_binding_json())


def http_request(
    method: str,
    path: str,
    *,
    params: dict | None = None,
    route_params: dict | None = None,
    body: bytes = b"",
    content_type: str = "application/json",
) -> func.HttpRequest:
    query = "&".join(f"{k}={v}" for k, v in (params or {}).items())
    url = f"https://func.example.net/api/{path}?code={KEY}"
    return func.HttpRequest(
        method=method,
        url=f"{url}&{query}" if query else url,
        headers={"content-type": content_type},
        params={"code": KEY, **(params or {})},
        route_params=route_params or {},
        body=body,
    )


async def list_page(client, **params) -> tuple[int, dict]:
    response = await operations.list_incidents(
        http_request("GET", "incidents", params=params), client
    )
    return response.status_code, json.loads(response.get_body())


async def rerun(client, instance_id: str) -> tuple[func.HttpResponse, dict]:
    request = http_request(
        "POST",
        f"incidents/{instance_id}/rerun",
        route_params={"instanceId": instance_id},
    )
    response = await operations.rerun_incident(request, client)
    return response, json.loads(response.get_body())


async def purge(client, body, *, now=None, content_type="application/json"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = http_request(
        "POST", "incidents/purge", body=raw, content_type=content_type
    )
    response = await operations.purge_incidents(request, client, now=now)
    return response.status_code, json.loads(response.get_body())


# GET /api/incidents ----------------------------------------------------------


async def test_list_returns_parents_only(hub, client):
    hub.enrichment("inc-a-000000000001", number=11)
    hub.enrichment("inc-b-000000000002", number=12)
    hub.engine.start_new("analyze_url", {}, instance_id="other-instance")
    status, body = await list_page(client)
    ids = sorted(item["instanceId"] for item in body["incidents"])
    assert status == 200
    assert ids == ["inc-a-000000000001", "inc-b-000000000002"]
    assert body["count"] == 2
    assert body["continuationToken"] is None


async def test_list_item_fields(hub, client):
    hub.enrichment("inc-a-000000000001", number=11)
    _, body = await list_page(client)
    (item,) = body["incidents"]
    assert item["incident"] == {"number": 11, "title": "T"}
    assert item["runtimeStatus"] == "Running"
    assert item["createdTime"].startswith("2025-03-01T00:00:00")
    assert item["lastUpdatedTime"]
    assert item["rerunOf"] is None
    assert item["statusUri"] == f"{BASE}/inc-a-000000000001"


async def test_list_never_echoes_key(hub, client):
    hub.enrichment("inc-a-000000000001")
    _, body = await list_page(client, top="5")
    assert KEY not in json.dumps(body)


async def test_list_status_filter(hub, client):
    done = hub.enrichment("inc-a-000000000001")
    hub.enrichment("inc-b-000000000002")
    hub.finish_all(done)
    _, completed = await list_page(client, status="completed")
    _, running = await list_page(client, status="Running,Pending")
    assert [i["instanceId"] for i in completed["incidents"]] == [done]
    assert [i["instanceId"] for i in running["incidents"]] == ["inc-b-000000000002"]


async def test_list_created_filters(hub, client, clock):
    hub.enrichment("inc-a-000000000001")
    clock.advance(timedelta(hours=2))
    hub.enrichment("inc-b-000000000002")
    middle = (START + timedelta(hours=1)).isoformat()
    _, after = await list_page(client, createdAfter=middle)
    _, before = await list_page(client, createdBefore=middle)
    assert [i["instanceId"] for i in after["incidents"]] == ["inc-b-000000000002"]
    assert [i["instanceId"] for i in before["incidents"]] == ["inc-a-000000000001"]


async def test_list_pages_through_children(hub, client, monkeypatch):
    """Task hub pages mix enrichments and sub-orchestrations; none is lost."""
    monkeypatch.setattr(taskhub, "SCAN_PAGE_SIZE", 2)
    expected = [hub.enrichment(f"inc-p{i}-00000000000{i}", objects=3) for i in range(4)]
    seen, token, requests = [], None, 0
    while True:
        params = {"top": "1"}
        if token is not None:
            params["continuationToken"] = token
        status, body = await list_page(client, **params)
        assert status == 200
        seen += [item["instanceId"] for item in body["incidents"]]
        token = body["continuationToken"]
        requests += 1
        if token is None or requests > 20:
            break
    assert sorted(seen) == sorted(expected)
    assert len(seen) == len(set(seen))


async def test_list_page_limit_returns_token(hub, client, monkeypatch):
    """A listing that reads its maximum of task hub pages stops with a token."""
    monkeypatch.setattr(taskhub, "SCAN_PAGE_SIZE", 2)
    monkeypatch.setattr(handlers, "LIST_MAX_PAGES", 1)
    hub.enrichment("inc-a-000000000001", objects=3)
    hub.enrichment("inc-b-000000000002", objects=3)
    _, first = await list_page(client, top="10")
    assert first["count"] == 1
    assert first["continuationToken"]


async def test_list_token_with_other_filter(hub, client, monkeypatch):
    monkeypatch.setattr(taskhub, "SCAN_PAGE_SIZE", 1)
    hub.enrichment("inc-a-000000000001", objects=0)
    hub.enrichment("inc-b-000000000002", objects=0)
    _, first = await list_page(client, top="1")
    status, body = await list_page(
        client, top="1", status="Failed", continuationToken=first["continuationToken"]
    )
    assert status == 400
    assert body["field"] == "continuationToken"


async def test_list_bad_status_names_field(client):
    status, body = await list_page(client, status="Broken")
    assert status == 400
    assert body["error"] == "invalid_parameter"
    assert body["field"] == "status"
    assert "Completed" in body["message"]


async def test_list_task_hub_down(server):
    binding = json.loads(server.client_binding_json())
    binding["rpcBaseUrl"] = "http://127.0.0.1:9/runtime/webhooks/durabletask/"
    status, body = await list_page(DurableOrchestrationClient(json.dumps(binding)))
    assert status == 503
    assert body["error"] == "task_hub_unavailable"


# POST /api/incidents/{instanceId}/rerun -------------------------------------


async def test_rerun_completed_starts_new_id(hub, client):
    source = hub.enrichment("inc-a-000000000001")
    hub.finish_all(source)
    response, body = await rerun(client, source)
    assert response.status_code == 202
    assert body["id"] == f"{source}-r1"
    assert body["rerunOf"] == source
    assert body["statusUri"] == f"{BASE}/{source}-r1"
    assert response.headers["Location"] == body["statusUri"]
    assert KEY not in response.get_body().decode()
    assert hub.status(f"{source}-r1") == "Pending"


async def test_rerun_input_from_stored_plan(hub, client):
    source = hub.enrichment("inc-a-000000000001", number=42, objects=1)
    hub.finish_all(source)
    await rerun(client, source)
    stored = hub.engine.get_status(f"{source}-r1")["input"]
    assert stored["incident"] == plan(42, 1)["incident"]
    assert stored["objects"] == plan(42, 1)["objects"]
    assert stored["options"] == settings.current().plan_options()


async def test_rerun_numbers_from_base(hub, client):
    source = hub.enrichment("inc-a-000000000001", objects=0)
    hub.finish(source)
    await rerun(client, source)
    hub.engine.process_messages()
    hub.finish(f"{source}-r1", "fail")
    response, body = await rerun(client, f"{source}-r1")
    assert response.status_code == 202
    assert body["id"] == f"{source}-r2"
    assert body["rerunOf"] == f"{source}-r1"


async def test_rerun_listed_with_origin(hub, client):
    source = hub.enrichment("inc-a-000000000001", objects=0)
    hub.finish(source)
    await rerun(client, source)
    _, body = await list_page(client)
    origins = {i["instanceId"]: i["rerunOf"] for i in body["incidents"]}
    assert origins == {source: None, f"{source}-r1": source}


async def test_rerun_while_rerun_runs(hub, client):
    source = hub.enrichment("inc-a-000000000001", objects=0)
    hub.finish(source)
    await rerun(client, source)
    response, body = await rerun(client, source)
    assert response.status_code == 409
    assert body["error"] == "rerun_running"
    assert body["rerunId"] == f"{source}-r1"
    assert body["runtimeStatus"] == "Pending"


@pytest.mark.parametrize("outcome", ["fail", "terminate"])
async def test_rerun_failed_or_terminated(hub, client, outcome):
    source = hub.enrichment("inc-a-000000000001", objects=0)
    if outcome == "fail":
        hub.finish(source, "fail")
    else:
        hub.engine.terminate(source, "operator")
    response, _ = await rerun(client, source)
    assert response.status_code == 202


async def test_rerun_running_is_conflict(hub, client):
    source = hub.enrichment("inc-a-000000000001")
    response, body = await rerun(client, source)
    assert response.status_code == 409
    assert body["error"] == "not_finished"
    assert body["field"] == "instanceId"
    assert body["runtimeStatus"] == "Running"
    assert hub.status(f"{source}-r1") is None


async def test_rerun_unknown_is_404(client):
    response, body = await rerun(client, "inc-nothing-000000000000")
    assert response.status_code == 404
    assert body["field"] == "instanceId"


async def test_rerun_other_orchestration_is_404(hub, client):
    hub.engine.start_new("analyze_url", {}, instance_id="inc-x-000000000000")
    hub.finish("inc-x-000000000000")
    response, _ = await rerun(client, "inc-x-000000000000")
    assert response.status_code == 404


async def test_rerun_child_id_rejected(client):
    response, body = await rerun(client, "inc-a-000000000001:url-0")
    assert response.status_code == 400
    assert body["error"] == "invalid_instance_id"


# POST /api/incidents/purge --------------------------------------------------


async def test_purge_old_finished(hub, client, clock):
    old = hub.enrichment("inc-old-000000000001", objects=2)
    hub.finish_all(old)
    clock.advance(timedelta(days=3))
    young = hub.enrichment("inc-new-000000000002", objects=1)
    hub.finish_all(young)
    status, body = await purge(
        client, {"olderThanDays": 1}, now=START + timedelta(days=3, hours=1)
    )
    assert status == 200
    assert body["purged"] == 3
    assert body["incidents"] == 1
    assert body["skipped"] == []
    assert body["moreToPurge"] is False
    assert hub.statuses("inc-old") == []
    assert len(hub.statuses("inc-new")) == 2


async def test_purge_leaves_running(hub, client):
    running = hub.enrichment("inc-run-000000000001", objects=1)
    status, body = await purge(client, {"olderThanDays": 0}, now=START + timedelta(1))
    assert status == 200
    assert body["purged"] == 0
    assert hub.status(running) == "Running"


async def test_purge_skips_running_children(hub, client):
    parent = hub.enrichment("inc-t-000000000001", objects=2)
    hub.engine.terminate(parent, "operator")
    _, body = await purge(client, {"olderThanDays": 0}, now=START + timedelta(1))
    assert body["purged"] == 0
    assert [s["instanceId"] for s in body["skipped"]] == [parent]
    assert "still Running" in body["skipped"][0]["reason"]
    assert hub.status(parent) == "Terminated"


async def test_purge_status_filter(hub, client):
    failed = hub.enrichment("inc-f-000000000001", objects=1)
    hub.finish_all(failed, "fail")
    done = hub.enrichment("inc-d-000000000002", objects=1)
    hub.finish_all(done)
    _, body = await purge(
        client,
        {"olderThanDays": 0, "statuses": ["Failed"]},
        now=START + timedelta(1),
    )
    assert body["purged"] == 2
    assert body["statuses"] == ["Failed"]
    assert hub.status(failed) is None
    assert hub.status(done) == "Completed"


async def test_purge_limit_reports_more(hub, client, monkeypatch):
    monkeypatch.setattr(handlers, "MAX_PURGE_INCIDENTS", 1)
    for index in range(2):
        hub.finish_all(hub.enrichment(f"inc-m{index}-00000000000{index}", objects=0))
    _, first = await purge(client, {"olderThanDays": 0}, now=START + timedelta(1))
    _, second = await purge(client, {"olderThanDays": 0}, now=START + timedelta(1))
    assert (first["incidents"], first["moreToPurge"]) == (1, True)
    assert (second["incidents"], second["moreToPurge"]) == (1, False)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [
        (b"", JSON, 400, "$"),
        (b"{", JSON, 400, "$"),
        (b"olderThanDays=1", "text/plain", 415, "Content-Type"),
        (b"[" * 60_000 + b"]" * 60_000, JSON, 413, "$"),
        (b'{"olderThanDays": -3}', JSON, 400, "olderThanDays"),
        (b'{"olderThanDays": 1, "statuses": ["Running"]}', JSON, 400, "statuses"),
        (b'{"olderThanDays": 1, "everything": true}', JSON, 400, "everything"),
    ],
)
async def test_purge_bad_request(hub, client, body, content_type, status, field):
    done = hub.enrichment("inc-d-000000000001", objects=0)
    hub.finish(done)
    code, answer = await purge(client, body, content_type=content_type)
    assert code == status
    assert answer["field"] == field
    assert set(answer) >= {"error", "field", "message"}
    assert hub.status(done) == "Completed"


async def test_purge_deep_json_is_invalid(client):
    request = http_request(
        "POST", "incidents/purge", body=b"[" * 30_000 + b"]" * 30_000
    )
    response = await operations.purge_incidents(request, client)
    assert response.status_code == 400
    assert json.loads(response.get_body())["error"] == "invalid_json"
