"""HTTP tests: app routes with function keys, the management API through the
SDK's DurableOrchestrationClient, the Event Grid webhook and host status."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from azure.durable_functions import (
    DurableOrchestrationClient,
    OrchestrationRuntimeStatus,
)
from azure.durable_functions.models.utils import http_utils

from devhost import DevHostServer, WallClock
from devhost.server import ensure_loopback, json_body_to_text

KEY = "test-function-key"
pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def server(make_engine):
    engine = make_engine(clock=WallClock())
    server = DevHostServer(engine, function_key=KEY, host="127.0.0.1", port=0)
    await server.start()
    engine.run_in_background()
    yield server
    await server.stop()
    # The SDK keeps one aiohttp session per process; it belongs to this loop.
    await http_utils._close_session()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def client(server) -> DurableOrchestrationClient:
    return DurableOrchestrationClient(server.client_binding_json())


async def wait_for(client, instance_id, status="Completed", timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        current = await client.get_status(instance_id)
        if current and current.runtime_status.value == status:
            return current
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{instance_id} not {status}")
        await asyncio.sleep(0.02)


async def test_route_with_key_starts(server, http, client):
    url = f"{server.base_url}/api/orchestrators/chain?code={KEY}"
    async with http.post(url, json=3) as response:
        body = await response.json()
        assert response.status == 202
        assert response.headers["Location"] == body["statusQueryGetUri"]
    status = await wait_for(client, body["id"])
    assert status.output == 10


async def test_route_key_header(server, http):
    url = f"{server.base_url}/api/orchestrators/chain"
    async with http.post(url, json=1, headers={"x-functions-key": KEY}) as response:
        assert response.status == 202


async def test_route_without_key(server, http):
    url = f"{server.base_url}/api/orchestrators/chain"
    async with http.post(url, json=1) as response:
        body = await response.read()
        assert response.status == 401
        assert body == b""
    statuses, _ = server.engine.query()
    assert statuses == []


async def test_route_wrong_key(server, http):
    url = f"{server.base_url}/api/orchestrators/chain?code=wrong"
    async with http.post(url, json=1) as response:
        assert response.status == 401


async def test_anonymous_route_template(server, http):
    url = f"{server.base_url}/api/items/7/red?q=x"
    async with http.get(url) as response:
        assert response.status == 200
        assert await response.text() == "7:red:x"
        assert response.headers["X-Item"] == "yes"


async def test_optional_route_parameter(server, http):
    async with http.get(f"{server.base_url}/api/items/7") as response:
        assert await response.text() == "7:none:"


async def test_route_constraint_mismatch(server, http):
    async with http.get(f"{server.base_url}/api/items/seven") as response:
        assert response.status == 404


async def test_route_method_mismatch(server, http):
    async with http.post(f"{server.base_url}/api/items/7") as response:
        assert response.status == 404


async def test_host_status(server, http):
    async with http.get(f"{server.base_url}/admin/host/status") as response:
        assert response.status == 200
        assert await response.json() == {"state": "Running"}


async def test_binding_urls(server):
    binding = json.loads(server.client_binding_json())
    assert binding["taskHubName"] == "DevhostTestHub"
    assert binding["rpcBaseUrl"] == f"{server.base_url}/runtime/webhooks/durabletask/"
    assert binding["managementUrls"]["id"] == "INSTANCEID"


async def test_client_start_and_status(client):
    instance_id = await client.start_new("chain", client_input=5)
    status = await wait_for(client, instance_id)
    assert status.output == 14
    assert status.input_ == 5


async def test_client_status_history(client):
    instance_id = await client.start_new("chain", client_input=1)
    await wait_for(client, instance_id)
    status = await client.get_status(
        instance_id, show_history=True, show_history_output=True
    )
    events = [event["EventType"] for event in status.historyEvents]
    assert events[0] == "ExecutionStarted"
    assert events.count("TaskCompleted") == 3
    assert status.historyEvents[1]["FunctionName"] == "add_one"
    assert status.historyEvents[1]["Result"] == 2


async def test_client_unknown_status(client):
    status = await client.get_status("does-not-exist")
    assert not status


async def test_client_start_conflict(client):
    await client.start_new("approval", instance_id="dup")
    with pytest.raises(Exception, match="already exists"):
        await client.start_new("approval", instance_id="dup")


async def test_client_unknown_orchestrator(client):
    with pytest.raises(Exception, match="doesn't exist"):
        await client.start_new("nope")


async def test_client_raise_event(client):
    instance_id = await client.start_new("approval")
    await wait_for(client, instance_id, "Running")
    await client.raise_event(instance_id, "Approve", {"by": "alice"})
    status = await wait_for(client, instance_id)
    assert status.output == {"by": "alice"}
    assert status.custom_status == "decided"


async def test_client_raise_event_unknown(client):
    with pytest.raises(Exception, match="No instance"):
        await client.raise_event("nobody", "Approve", 1)


async def test_client_raise_event_finished(client):
    instance_id = await client.start_new("chain", client_input=1)
    await wait_for(client, instance_id)
    with pytest.raises(Exception, match="is gone"):
        await client.raise_event(instance_id, "Approve", 1)


async def test_client_terminate(client):
    instance_id = await client.start_new("approval")
    await wait_for(client, instance_id, "Running")
    await client.terminate(instance_id, "stop it")
    status = await wait_for(client, instance_id, "Terminated")
    assert status.output == "stop it"


async def test_client_purge(client):
    instance_id = await client.start_new("chain", client_input=1)
    await wait_for(client, instance_id)
    result = await client.purge_instance_history(instance_id)
    assert result.instances_deleted == 1
    assert not await client.get_status(instance_id)


async def test_client_purge_by(client):
    instance_id = await client.start_new("chain", client_input=1)
    await wait_for(client, instance_id)
    since = datetime.now(UTC) - timedelta(hours=1)
    result = await client.purge_instance_history_by(
        created_time_from=since, runtime_status=[OrchestrationRuntimeStatus.Completed]
    )
    assert result.instances_deleted == 1


async def test_client_status_by(client):
    done_id = await client.start_new("chain", client_input=1)
    waiting_id = await client.start_new("approval")
    await wait_for(client, done_id)
    await wait_for(client, waiting_id, "Running")
    since = datetime.now(UTC) - timedelta(hours=1)
    running = await client.get_status_by(
        created_time_from=since, runtime_status=[OrchestrationRuntimeStatus.Running]
    )
    assert [s.instance_id for s in running] == [waiting_id]


async def test_client_suspend_resume(client):
    instance_id = await client.start_new("approval")
    await wait_for(client, instance_id, "Running")
    await client.suspend(instance_id, "hold")
    await wait_for(client, instance_id, "Suspended")
    await client.raise_event(instance_id, "Approve", 1)
    await client.resume(instance_id, "go")
    status = await wait_for(client, instance_id)
    assert status.output == 1


async def test_client_restart(client):
    instance_id = await client.start_new("chain", client_input=2)
    await wait_for(client, instance_id)
    new_id = await client.restart(instance_id)
    status = await wait_for(client, new_id)
    assert new_id != instance_id
    assert status.output == 8


async def test_list_continuation(server, http):
    for index in range(3):
        server.engine.start_new("approval", instance_id=f"page-{index}")
    url = f"{server.base_url}/runtime/webhooks/durabletask/instances?top=2"
    async with http.get(url) as response:
        first_page = await response.json()
        token = response.headers["x-ms-continuation-token"]
    async with http.get(url, headers={"x-ms-continuation-token": token}) as response:
        second_page = await response.json()
        assert "x-ms-continuation-token" not in response.headers
    ids = [s["instanceId"] for s in first_page + second_page]
    assert sorted(ids) == ["page-0", "page-1", "page-2"]
    assert len(first_page) == 2


async def test_status_codes(server, http):
    server.engine.start_new("approval", instance_id="codes")
    url = f"{server.base_url}/runtime/webhooks/durabletask/instances/codes"
    async with http.get(url) as response:
        assert response.status == 202
    server.engine.terminate("codes", "done")
    async with http.get(url) as response:
        assert response.status == 200
    async with http.get(url + "-missing") as response:
        assert response.status == 404


async def test_event_grid_starts(server, http, client):
    url = f"{server.base_url}/runtime/webhooks/eventgrid?functionName=on_blob_created"
    event = {
        "id": "evt-1",
        "topic": "/subscriptions/x/storage",
        "subject": "/blobServices/default/containers/uploads/blobs/a.bin",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2025-01-01T00:00:00Z",
        "dataVersion": "1",
        "data": {"id": "from-event", "value": 1},
    }
    async with http.post(f"{url}&code={KEY}", json=[event]) as response:
        assert response.status == 202
    status = await wait_for(client, "from-event")
    assert status.output == 6


async def test_event_grid_needs_key(server, http):
    url = f"{server.base_url}/runtime/webhooks/eventgrid?functionName=on_blob_created"
    async with http.post(url, json=[]) as response:
        assert response.status == 401


async def test_app_route_reads_status(server, http, client):
    instance_id = await client.start_new("chain", client_input=1)
    await wait_for(client, instance_id)
    url = f"{server.base_url}/api/status/{instance_id}?code={KEY}"
    async with http.get(url) as response:
        assert await response.text() == "Completed"


# Addresses the server must reject; nothing binds to them.
@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])  # noqa: S104
def test_loopback_only(host):
    with pytest.raises(ValueError, match="loopback"):
        ensure_loopback(host)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", None),
        (b'"{\\"a\\": 1}"', '{"a": 1}'),
        (b'{"a": 1}', '{"a": 1}'),
        (b'"plain"', '"plain"'),
        (b"5", "5"),
    ],
)
def test_json_body_to_text(body, expected):
    assert json_body_to_text(body) == expected
