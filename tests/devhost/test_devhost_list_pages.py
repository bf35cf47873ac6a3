"""Paging of `GET /runtime/webhooks/durabletask/instances` as the host pages it.

Without `top` the host returns one page of 100 instances and a continuation
token; the 1.x SDK's get_status_by reads only that first page.
"""

from __future__ import annotations

import aiohttp
import pytest
from azure.durable_functions import DurableOrchestrationClient
from azure.durable_functions.models.utils import http_utils

from devhost import DevHostServer
from devhost.server import CONTINUATION_HEADER, DEFAULT_PAGE_SIZE

KEY = "test-function-key"
EXTRA = 5
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def server(engine):
    # The engine never runs: every instance stays Pending, which is all a
    # listing needs.
    for index in range(DEFAULT_PAGE_SIZE + EXTRA):
        engine.start_new("approval", instance_id=f"page-{index:03d}")
    server = DevHostServer(engine, function_key=KEY, host="127.0.0.1", port=0)
    await server.start()
    yield server
    await server.stop()
    await http_utils._close_session()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def instances_url(server) -> str:
    return f"{server.base_url}/runtime/webhooks/durabletask/instances"


async def test_list_without_top_is_one_page(server, http):
    async with http.get(instances_url(server)) as response:
        page = await response.json()
        token = response.headers.get(CONTINUATION_HEADER)
    assert len(page) == DEFAULT_PAGE_SIZE
    assert token


async def test_list_continues_after_default_page(server, http):
    async with http.get(instances_url(server)) as response:
        first = await response.json()
        token = response.headers[CONTINUATION_HEADER]
    headers = {CONTINUATION_HEADER: token}
    async with http.get(instances_url(server), headers=headers) as response:
        second = await response.json()
        assert CONTINUATION_HEADER not in response.headers
    ids = [status["instanceId"] for status in first + second]
    assert len(second) == EXTRA
    assert len(set(ids)) == DEFAULT_PAGE_SIZE + EXTRA


async def test_sdk_status_by_sees_first_page(server):
    client = DurableOrchestrationClient(server.client_binding_json())
    statuses = await client.get_status_by(instance_id_prefix="page-")
    assert len(statuses) == DEFAULT_PAGE_SIZE


async def test_list_with_prefix_and_input(server, http):
    url = f"{instances_url(server)}?instanceIdPrefix=page-10&showInput=true&top=3"
    async with http.get(url) as response:
        page = await response.json()
        token = response.headers.get(CONTINUATION_HEADER)
    ids = [status["instanceId"] for status in page]
    assert ids == ["page-100", "page-101", "page-102"]
    assert token


@pytest.mark.parametrize("top", ["0", "-2", "many"])
async def test_list_rejects_bad_top(server, http, top):
    async with http.get(f"{instances_url(server)}?top={top}") as response:
        body = await response.json()
        assert response.status == 400
    assert "top" in body["Message"]
