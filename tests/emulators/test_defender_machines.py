"""Defender emulator: machines, advanced hunting, auth, faults and throttling."""

from datetime import datetime

import httpx
import pytest

from emulators import RunningEmulators
from tests.emulators.conftest import (
    BEARER_TOKEN,
    LINUX_DISK_ID,
    LINUX_DISK_PATH,
    LINUX_DISK_SHA256,
    LINUX_QUARANTINE_ID,
    WINDOWS_ID,
    WINDOWS_OFFLINE_ID,
    StartEmulators,
    bare_client,
    defender_client,
    run_script,
)

pytestmark = pytest.mark.timeout(30)

CONNECTOR_QUERY = (
    "DeviceFileEvents | where DeviceId == '{device}' and {column} == '{value}'"
    " | order by Timestamp desc | project FolderPath, FileName, SHA256, SHA1 | take 1"
)


async def hunt(client: httpx.AsyncClient, query: str) -> httpx.Response:
    return await client.post("/api/advancedqueries/run", json={"Query": query})


# Machines


async def test_machine_by_id(defender: httpx.AsyncClient) -> None:
    response = await defender.get(f"/api/machines/{LINUX_QUARANTINE_ID}")
    machine = response.json()
    assert response.status_code == 200
    assert machine["id"] == LINUX_QUARANTINE_ID
    assert machine["computerDnsName"] == "lx-0042"
    assert machine["osPlatform"] == "Linux"
    assert machine["healthStatus"] == "Active"
    assert machine["onboardingStatus"] == "Onboarded"
    assert machine["@odata.context"].endswith("/api/$metadata#Machines/$entity")
    # The emulator's own settings are not part of the entity.
    assert not {"online", "files", "automationLevel"} & set(machine)


async def test_machine_unknown(defender: httpx.AsyncClient) -> None:
    response = await defender.get("/api/machines/" + "0" * 40)
    error = response.json()["error"]
    assert response.status_code == 404
    assert error["code"] == "ResourceNotFound"
    assert "0" * 40 in error["message"]
    assert error["target"]


async def test_machine_offline_last_seen(defender: httpx.AsyncClient) -> None:
    online = (await defender.get(f"/api/machines/{WINDOWS_ID}")).json()
    offline = (await defender.get(f"/api/machines/{WINDOWS_OFFLINE_ID}")).json()
    gap = datetime.fromisoformat(online["lastSeen"]) - datetime.fromisoformat(
        offline["lastSeen"]
    )
    # The catalogue device has been offline for 30 hours: still Active, because
    # Defender shows a device as Inactive only after seven days.
    assert offline["healthStatus"] == "Active"
    assert 29.9 < gap.total_seconds() / 3600 < 31


async def test_machine_filter_by_name(defender: httpx.AsyncClient) -> None:
    exact = await defender.get(
        "/api/machines", params={"$filter": "computerDnsName eq 'lx-0042'"}
    )
    upper = await defender.get(
        "/api/machines", params={"$filter": "computerDnsName eq 'LX-0042'"}
    )
    quoted = await defender.get(
        "/api/machines", params={"$filter": "computerDnsName eq 'lx''0042'"}
    )
    assert exact.status_code == 200
    assert [m["id"] for m in exact.json()["value"]] == [LINUX_QUARANTINE_ID]
    assert [m["id"] for m in upper.json()["value"]] == [LINUX_QUARANTINE_ID]
    assert quoted.status_code == 200
    assert quoted.json()["value"] == []


async def test_machine_filter_and_paging(defender: httpx.AsyncClient) -> None:
    linux = await defender.get(
        "/api/machines", params={"$filter": "osPlatform eq 'Linux'"}
    )
    combined = await defender.get(
        "/api/machines",
        params={"$filter": "osPlatform eq 'Linux' and rbacGroupId eq 141"},
    )
    first = await defender.get(
        "/api/machines", params={"$filter": "osPlatform eq 'Linux'", "$top": "1"}
    )
    second = await defender.get(
        "/api/machines",
        params={"$filter": "osPlatform eq 'Linux'", "$top": "1", "$skip": "1"},
    )
    everything = await defender.get("/api/machines")
    linux_ids = {m["id"] for m in linux.json()["value"]}
    assert linux_ids == {LINUX_QUARANTINE_ID, LINUX_DISK_ID}
    assert {m["id"] for m in combined.json()["value"]} == linux_ids
    assert len(first.json()["value"]) == 1
    assert len(second.json()["value"]) == 1
    assert first.json()["value"][0]["id"] != second.json()["value"][0]["id"]
    assert len(everything.json()["value"]) == 5


@pytest.mark.parametrize(
    "params",
    [
        {"$filter": "computerDnsName ne 'lx-0042'"},
        {"$filter": "hostname eq 'lx-0042'"},
        {"$filter": "rbacGroupId eq '141'"},
        {"$filter": "computerDnsName eq 'lx-0042' or id eq 'x'"},
        {"$filter": "computerDnsName eq 'unterminated"},
        {"$top": "0"},
        {"$skip": "-1"},
        {"$orderby": "computerDnsName"},
    ],
)
async def test_machine_filter_rejected(
    defender: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await defender.get("/api/machines", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ODataError"


# Advanced hunting


async def test_hunting_connector_query(defender: httpx.AsyncClient) -> None:
    query = CONNECTOR_QUERY.format(
        device=LINUX_DISK_ID, column="SHA256", value=LINUX_DISK_SHA256
    )
    response = await hunt(defender, query)
    body = response.json()
    assert response.status_code == 200
    assert body["Schema"] == [
        {"Name": "FolderPath", "Type": "String"},
        {"Name": "FileName", "Type": "String"},
        {"Name": "SHA256", "Type": "String"},
        {"Name": "SHA1", "Type": "String"},
    ]
    assert body["Results"] == [
        {
            "FolderPath": LINUX_DISK_PATH,
            "FileName": "update.sh",
            "SHA256": LINUX_DISK_SHA256,
            "SHA1": "5c9a068eeea3bda2ed951fd62952cfe427ed84d4",
        }
    ]


async def test_hunting_by_sha1(defender: httpx.AsyncClient) -> None:
    query = CONNECTOR_QUERY.format(
        device=LINUX_QUARANTINE_ID,
        column="SHA1",
        value="3395856ce81f2b7382dee72602f798b642f14140",
    )
    rows = (await hunt(defender, query)).json()["Results"]
    assert [row["FolderPath"] for row in rows] == ["/home/azureuser/eicar.com"]


async def test_hunting_no_match(defender: httpx.AsyncClient) -> None:
    other_device = CONNECTOR_QUERY.format(
        device=WINDOWS_ID, column="SHA256", value=LINUX_DISK_SHA256
    )
    upper_case = CONNECTOR_QUERY.format(
        device=LINUX_DISK_ID, column="SHA256", value=LINUX_DISK_SHA256.upper()
    )
    first = await hunt(defender, other_device)
    second = await hunt(defender, upper_case)
    assert first.status_code == 200
    assert first.json()["Results"] == []
    # == is case-sensitive in KQL.
    assert second.json()["Results"] == []


async def test_hunting_order_and_types(defender: httpx.AsyncClient) -> None:
    newest_first = await hunt(
        defender,
        f"DeviceFileEvents | where DeviceId =~ '{LINUX_DISK_ID.upper()}'"
        " | sort by Timestamp | project Timestamp, ReportId, FileSize",
    )
    oldest_first = await hunt(
        defender,
        f"DeviceFileEvents | where DeviceId == '{LINUX_DISK_ID}'"
        " | order by Timestamp asc | project ReportId | limit 5",
    )
    by_number = await hunt(
        defender, "DeviceFileEvents | where ReportId == 5120 | project FileName"
    )
    body = newest_first.json()
    assert body["Schema"] == [
        {"Name": "Timestamp", "Type": "DateTime"},
        {"Name": "ReportId", "Type": "Int64"},
        {"Name": "FileSize", "Type": "Int64"},
    ]
    assert [row["ReportId"] for row in body["Results"]] == [5188, 5120]
    assert body["Results"][0]["Timestamp"].endswith("Z")
    assert [row["ReportId"] for row in oldest_first.json()["Results"]] == [5120, 5188]
    assert by_number.json()["Results"] == [{"FileName": "update.sh"}]


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("DeviceProcessEvents | take 1", "DeviceProcessEvents"),
        ("DeviceFileEvents | summarize count() by DeviceId", "summarize"),
        ("DeviceFileEvents | extend X = 1", "extend"),
        ("DeviceFileEvents | where Colour == 'red'", "Colour"),
        ("DeviceFileEvents | where SHA256 contains 'ab'", "Unsupported condition"),
        ("DeviceFileEvents | where FileSize == '1'", "FileSize"),
        ("DeviceFileEvents | take -1", "take"),
        ("DeviceFileEvents | project FileName | where SHA1 == 'x'", "SHA1"),
        ("DeviceFileEvents || take 1", "empty stage"),
        ("DeviceFileEvents | where SHA1 == 'open", "Unsupported condition"),
    ],
)
async def test_hunting_rejected(
    defender: httpx.AsyncClient, query: str, fragment: str
) -> None:
    response = await hunt(defender, query)
    message = response.json()["error"]["message"]
    assert response.status_code == 400
    assert fragment in message
    assert "DeviceFileEvents | where Column == 'value'" in message


@pytest.mark.parametrize("body", [{}, {"query": "DeviceFileEvents"}, {"Query": ""}])
async def test_hunting_missing_query(
    defender: httpx.AsyncClient, body: dict[str, str]
) -> None:
    response = await defender.post("/api/advancedqueries/run", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MissingRequiredParameter"


async def test_hunting_invalid_json(defender: httpx.AsyncClient) -> None:
    response = await defender.post(
        "/api/advancedqueries/run",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidRequestBody"


# Authentication


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {BEARER_TOKEN}", BEARER_TOKEN],
)
async def test_auth_rejected(
    emulators: RunningEmulators, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with bare_client(emulators.defender_url) as client:
        machine = await client.get(f"/api/machines/{WINDOWS_ID}", headers=headers)
        hunting = await client.post(
            "/api/advancedqueries/run",
            json={"Query": "DeviceFileEvents | take 1"},
            headers=headers,
        )
    assert machine.status_code == 401
    assert machine.json()["error"]["code"] == "Unauthorized"
    assert hunting.status_code == 401


async def test_auth_scheme_case(emulators: RunningEmulators) -> None:
    async with bare_client(emulators.defender_url) as client:
        response = await client.get(
            f"/api/machines/{WINDOWS_ID}",
            headers={"Authorization": f"bearer {BEARER_TOKEN}"},
        )
    assert response.status_code == 200


async def test_control_routes_without_auth(emulators: RunningEmulators) -> None:
    async with bare_client(emulators.defender_url) as client:
        health = await client.get("/_emulator/health")
        uploads = await client.get("/_emulator/uploads")
    assert health.json()["emulator"] == "defender"
    assert health.json()["speed"] == 600.0
    assert uploads.json() == {"uploads": []}


async def test_unknown_route_shape(defender: httpx.AsyncClient) -> None:
    response = await defender.get("/api/indicators")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ResourceNotFound"


# Faults, throttling and the request log


async def test_fault_429_retry_after(defender: httpx.AsyncClient) -> None:
    rule = {"path_prefix": "/api/machines", "status": 429, "retry_after": 3}
    await defender.post("/_emulator/faults", json=rule)
    faulted = await defender.get(f"/api/machines/{WINDOWS_ID}")
    normal = await defender.get(f"/api/machines/{WINDOWS_ID}")
    assert faulted.status_code == 429
    assert faulted.headers["Retry-After"] == "3"
    assert faulted.json()["error"]["code"] == "TooManyRequests"
    assert normal.status_code == 200


@pytest.mark.parametrize("status", [500, 503])
async def test_fault_server_error(defender: httpx.AsyncClient, status: int) -> None:
    await defender.post(
        "/_emulator/faults",
        json={
            "path_prefix": "/api/advancedqueries",
            "method": "POST",
            "status": status,
        },
    )
    response = await hunt(defender, "DeviceFileEvents | take 1")
    assert response.status_code == status
    assert response.json()["error"]["message"]
    assert "Retry-After" not in response.headers


async def test_request_log(defender: httpx.AsyncClient) -> None:
    await defender.get(
        "/api/machines", params={"$filter": "computerDnsName eq 'lx-0042'"}
    )
    await defender.get("/api/machines/" + "0" * 40)
    await defender.get("/_emulator/state")
    entries = (await defender.get("/_emulator/requests")).json()["requests"]
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("GET", "/api/machines", 200),
        ("GET", "/api/machines/" + "0" * 40, 404),
    ]


async def test_live_response_throttled(start: StartEmulators) -> None:
    # At speed 10 an emulated minute is six wall seconds, enough for 11 calls.
    running = await start(speed=10)
    async with defender_client(running) as client:
        statuses = [
            (await run_script(client, "f" * 40, "anyrun-upload.sh", "v1.x")).status_code
            for _ in range(11)
        ]
        throttled = await run_script(client, "f" * 40, "anyrun-upload.sh", "v1.x")
        other_api = await client.get(f"/api/machines/{WINDOWS_ID}")
    assert statuses[:10] == [404] * 10
    assert statuses[10] == 429
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    assert other_api.status_code == 200
