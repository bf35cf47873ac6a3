"""Reports, IOC lists and history for the catalogue entries and hash-based verdicts."""

from collections import Counter
from typing import Any

import httpx
import pytest

from emulators.anyrun.catalogue import Catalogue
from tests.emulators.conftest import (
    CLEAN_URL,
    FAKE_UPDATE_URL,
    LOADER_URL,
    PHISHING_URL,
    StartEmulators,
    anyrun_client,
    submit_url,
    wait_until_finished,
)

pytestmark = pytest.mark.timeout(30)

# url, verdict text, score, threat level, tags, MITRE ids, IOC count range
CATALOGUE = [
    (
        PHISHING_URL,
        "Malicious activity",
        100,
        2,
        ["phishing", "evilginx"],
        {"T1566.002", "T1056.003"},
        range(8, 13),
    ),
    (
        FAKE_UPDATE_URL,
        "Suspicious activity",
        65,
        1,
        ["fake-update"],
        {"T1189"},
        range(4, 7),
    ),
    (CLEAN_URL, "No threats detected", 0, 0, [], set(), range(2, 4)),
    (
        LOADER_URL,
        "Malicious activity",
        88,
        2,
        ["loader"],
        {"T1204.002", "T1059.007", "T1105"},
        range(6, 13),
    ),
]


async def finished_task(client: httpx.AsyncClient, url: str) -> str:
    task_id = await submit_url(client, url)
    await wait_until_finished(client, task_id)
    return task_id


async def get_report(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/analysis/{task_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def get_iocs(client: httpx.AsyncClient, task_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/report/{task_id}/ioc/json")
    assert response.status_code == 200, response.text
    return response.json()


def ioc_set(iocs: list[dict[str, Any]]) -> set[tuple[str, str, int]]:
    return {(item["type"], item["ioc"], item["reputation"]) for item in iocs}


@pytest.mark.parametrize(
    ("url", "text", "score", "level", "tags", "mitre", "ioc_count"),
    CATALOGUE,
    ids=["phishing", "fake-update", "clean", "loader"],
)
async def test_report_catalogue_verdict(
    anyrun: httpx.AsyncClient,
    url: str,
    text: str,
    score: int,
    level: int,
    tags: list[str],
    mitre: set[str],
    ioc_count: range,
) -> None:
    task_id = await finished_task(anyrun, url)
    body = await get_report(anyrun, task_id)
    data = body["data"]
    analysis = data["analysis"]
    iocs = await get_iocs(anyrun, task_id)
    assert body["error"] is False
    assert data["status"] == "done"
    assert analysis["uuid"] == task_id
    assert analysis["permanentUrl"] == f"https://app.any.run/tasks/{task_id}"
    assert analysis["scores"]["verdict"] == {
        "score": score,
        "threatLevel": level,
        "threatLevelText": text,
    }
    assert [item["tag"] for item in analysis["tags"]] == tags
    assert {item["id"] for item in data["mitre"]} == mitre
    assert all(item["name"] and item["phases"] for item in data["mitre"])
    assert analysis["content"]["mainObject"]["type"] == "url"
    assert analysis["content"]["mainObject"]["url"] == url
    assert len(iocs) in ioc_count


async def test_report_phishing_iocs(anyrun: httpx.AsyncClient) -> None:
    iocs = await get_iocs(anyrun, await finished_task(anyrun, PHISHING_URL))
    found = ioc_set(iocs)
    assert ("url", PHISHING_URL, 2) in found
    assert ("domain", "login.microsoftonline.example.net", 2) in found
    assert ("ip", "203.0.113.45", 2) in found
    assert ("domain", "cdn.example.org", 1) in found
    assert ("ip", "198.51.100.77", 0) in found
    assert any(kind == "sha256" and rep == 2 for kind, _, rep in found)
    assert {"ip", "domain", "url", "sha256"} == {item["type"] for item in iocs}


async def test_report_suspicious_iocs(anyrun: httpx.AsyncClient) -> None:
    iocs = await get_iocs(anyrun, await finished_task(anyrun, FAKE_UPDATE_URL))
    reputations = Counter(item["reputation"] for item in iocs)
    assert set(reputations) == {0, 1}


async def test_report_clean_iocs(anyrun: httpx.AsyncClient) -> None:
    iocs = await get_iocs(anyrun, await finished_task(anyrun, CLEAN_URL))
    assert {item["reputation"] for item in iocs} == {0}


async def test_report_loader_iocs(anyrun: httpx.AsyncClient) -> None:
    iocs = await get_iocs(anyrun, await finished_task(anyrun, LOADER_URL))
    assert any(i["type"] == "sha256" and i["reputation"] == 2 for i in iocs)


async def test_report_ioc_fields(anyrun: httpx.AsyncClient) -> None:
    iocs = await get_iocs(anyrun, await finished_task(anyrun, PHISHING_URL))
    keys = {"category", "type", "name", "ioc", "reputation", "discoveringEntryId"}
    assert all(set(item) == keys for item in iocs)
    assert len({(item["type"], item["ioc"]) for item in iocs}) == len(iocs)


async def test_report_network_consistent(anyrun: httpx.AsyncClient) -> None:
    # Every domain and IP in the report's network section is also an IOC.
    task_id = await finished_task(anyrun, PHISHING_URL)
    network = (await get_report(anyrun, task_id))["data"]["network"]
    iocs = ioc_set(await get_iocs(anyrun, task_id))
    ioc_values = {value for _, value, _ in iocs}
    assert {dns["domain"] for dns in network["dnsRequests"]} <= ioc_values
    assert {conn["ip"] for conn in network["connections"]} <= ioc_values
    assert {http["url"] for http in network["httpRequests"]} <= ioc_values
    assert network["threats"][0]["dstIp"] == "203.0.113.45"


async def test_report_sample_shape(anyrun: httpx.AsyncClient) -> None:
    task_id = await finished_task(anyrun, LOADER_URL)
    data = (await get_report(anyrun, task_id))["data"]
    expected_keys = {
        "analysis",
        "counters",
        "debugStrings",
        "environments",
        "incidents",
        "mitre",
        "modified",
        "network",
        "processes",
        "status",
    }
    assert expected_keys <= set(data)
    assert data["analysis"]["options"]["timeout"] == 120
    assert data["analysis"]["duration"] == 120
    assert data["environments"]["os"]["title"].startswith("Windows 10")
    assert data["processes"][0]["mainProcess"] is True
    assert data["processes"][0]["fileName"] == "msedge.exe"
    assert len(data["processes"]) == 3
    assert data["counters"]["network"]["dns"] == 2
    assert data["counters"]["processes"]["malicious"] == 2
    assert len(data["modified"]["files"]) == 3
    assert data["incidents"][0]["mitre"] == ["T1204.002", "T1059.007"]


async def test_report_while_running(start: StartEmulators) -> None:
    running = await start(speed=1.0)
    async with anyrun_client(running) as client:
        task_id = await submit_url(client, PHISHING_URL)
        data = (await get_report(client, task_id))["data"]
        iocs = await get_iocs(client, task_id)
    assert data["status"] == "running"
    assert "scores" not in data["analysis"]
    assert data["analysis"]["tags"] == []
    assert data["mitre"] == []
    assert iocs == []


async def test_report_unknown_task(anyrun: httpx.AsyncClient) -> None:
    report = await anyrun.get("/v1/analysis/0ec0a4cc-72a4-41b9-8a13-9f283b3b4e15")
    iocs = await anyrun.get("/report/not-a-uuid/ioc/json")
    assert report.status_code == 404
    assert report.json()["error"] is True
    assert iocs.status_code == 404


async def test_report_linux_environment(anyrun: httpx.AsyncClient) -> None:
    task_id = await submit_url(
        anyrun, CLEAN_URL, env_os="linux", env_version="12.2", opt_timeout=10
    )
    await wait_until_finished(anyrun, task_id)
    data = (await get_report(anyrun, task_id))["data"]
    assert data["environments"]["os"]["product"] == "Debian"
    assert data["processes"][0]["image"] == "/opt/google/chrome/chrome"


async def test_history_tags_newest_first(anyrun: httpx.AsyncClient) -> None:
    first = await submit_url(anyrun, CLEAN_URL, user_tags="inc-1,sentinel")
    second = await submit_url(anyrun, PHISHING_URL, user_tags="inc-2")
    third = await submit_url(anyrun, CLEAN_URL)
    page = (await anyrun.get("/v1/analysis", params={"limit": 2})).json()["data"]
    rest = (await anyrun.get("/v1/analysis", params={"skip": 2, "limit": 25})).json()
    tasks = page["tasks"]
    assert [task["uuid"] for task in tasks] == [third, second]
    assert tasks[1]["tags"][0] == "inc-2"
    assert [task["uuid"] for task in rest["data"]["tasks"]] == [first]
    assert rest["data"]["tasks"][0]["tags"][:2] == ["inc-1", "sentinel"]


async def test_history_item_fields(anyrun: httpx.AsyncClient) -> None:
    task_id = await finished_task(anyrun, PHISHING_URL)
    item = (await anyrun.get("/v1/analysis")).json()["data"]["tasks"][0]
    assert item["uuid"] == task_id
    assert item["verdict"] == "Malicious activity"
    assert item["name"] == PHISHING_URL
    assert item["related"] == f"https://app.any.run/tasks/{task_id}"
    assert set(item["hashes"]) == {"md5", "sha1", "sha256", "ssdeep"}
    assert item["date"].endswith("Z")
    assert "phishing" in item["tags"]


async def test_history_team_param(anyrun: httpx.AsyncClient) -> None:
    await submit_url(anyrun, CLEAN_URL)
    response = await anyrun.get(
        "/v1/analysis", params={"team": "true", "skip": 0, "limit": 25}
    )
    assert response.status_code == 200
    assert len(response.json()["data"]["tasks"]) == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"skip": -1}, "skip"),
        ({"team": "yes"}, "team"),
    ],
)
async def test_history_bad_query(
    anyrun: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    response = await anyrun.get("/v1/analysis", params=params)
    assert response.status_code == 400
    assert response.json()["message"].startswith(f"{field}: ")


def test_catalogue_hash_stable() -> None:
    url = "https://unlisted.example.com/some/page"
    first = Catalogue.load().for_url(url)
    second = Catalogue.load().for_url(url)
    assert first == second
    assert first.source == "hash"


def test_catalogue_hash_mostly_clean() -> None:
    catalogue = Catalogue.load()
    levels = Counter(
        catalogue.for_url(f"https://site{i}.example.com/").threat_level
        for i in range(400)
    )
    assert levels[0] >= 300
    assert levels[1] >= 20
    assert levels[2] == 0


def test_catalogue_files_mostly_clean() -> None:
    catalogue = Catalogue.load()
    levels = Counter(catalogue.for_file(f"{i:064x}").threat_level for i in range(400))
    assert levels[0] >= 300
    assert levels[1] >= 10
    assert levels[2] >= 3


def test_catalogue_url_normalized() -> None:
    profile = Catalogue.load().for_url("HTTPS://WWW.EXAMPLE.COM")
    assert profile.source == "catalogue"
    assert profile.threat_level == 0


def test_catalogue_broken_fails() -> None:
    profile = Catalogue.load().for_url("http://broken.example.net/")
    assert profile.fail_after_seconds == 30
