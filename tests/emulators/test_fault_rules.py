"""Fault rules: path_regex, probability and seed, injected counts, stats, validation."""

from typing import Any

import httpx
import pytest

from tests.emulators.conftest import (
    ARM_VERSION,
    CLEAN_URL,
    INCIDENT_ID,
    submit_url,
    wait_until_finished,
)

pytestmark = pytest.mark.timeout(30)

REPORT_REGEX = "/v1/analysis/[0-9a-f-]{36}"


async def add_rule(client: httpx.AsyncClient, rule: Any) -> dict[str, Any]:
    response = await client.post("/_emulator/faults", json=rule)
    assert response.status_code == 200, response.text
    return response.json()


async def listed_rules(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    return (await client.get("/_emulator/faults")).json()["faults"]


async def injected(client: httpx.AsyncClient) -> dict[str, int]:
    response = await client.get("/_emulator/faults/stats")
    assert response.status_code == 200, response.text
    return response.json()["injected"]


# path_regex


async def test_regex_report_not_monitor(anyrun: httpx.AsyncClient) -> None:
    task_id = await submit_url(anyrun, CLEAN_URL)
    await add_rule(anyrun, {"path_regex": REPORT_REGEX, "status": 503, "times": 2})
    last_event = await wait_until_finished(anyrun, task_id)
    report = await anyrun.get(f"/v1/analysis/{task_id}")
    rules = await listed_rules(anyrun)
    assert last_event["completed"] is True
    assert report.status_code == 503
    assert rules[0]["path_regex"] == REPORT_REGEX
    assert rules[0]["path_prefix"] is None
    assert rules[0]["remaining"] == 1
    assert rules[0]["injected"] == 1


async def test_regex_must_match_whole_path(anyrun: httpx.AsyncClient) -> None:
    await add_rule(anyrun, {"path_regex": "/v1", "status": 503})
    response = await anyrun.get("/v1/user")
    rules = await listed_rules(anyrun)
    assert response.status_code == 200
    assert rules[0]["remaining"] == 1
    assert rules[0]["injected"] == 0


# probability and seed


async def statuses_with_seed(client: httpx.AsyncClient, seed: int) -> list[int]:
    rule = {
        "path_prefix": "/v1/user",
        "status": 503,
        "probability": 0.5,
        "seed": seed,
        "times": 100,
    }
    await add_rule(client, rule)
    return [(await client.get("/v1/user")).status_code for _ in range(20)]


async def test_probability_seed_repeats(anyrun: httpx.AsyncClient) -> None:
    first = await statuses_with_seed(anyrun, 11)
    rules = await listed_rules(anyrun)
    await anyrun.post("/_emulator/reset")
    second = await statuses_with_seed(anyrun, 11)
    faulted = first.count(503)
    assert set(first) == {200, 503}
    assert second == first
    # Requests that drew no fault did not use up times.
    assert rules[0]["remaining"] == 100 - faulted
    assert rules[0]["injected"] == faulted
    assert rules[0]["seed"] == 11
    assert rules[0]["probability"] == 0.5


async def test_probability_passes_to_next_rule(anyrun: httpx.AsyncClient) -> None:
    # A seeded rule with a small probability that misses its first draw.
    unlikely = {"path_prefix": "/v1/user", "status": 500, "probability": 0.001}
    await add_rule(
        anyrun, [{**unlikely, "seed": 1}, {"path_prefix": "/v1/user", "status": 503}]
    )
    response = await anyrun.get("/v1/user")
    rules = await listed_rules(anyrun)
    assert response.status_code == 503
    assert [rule["status"] for rule in rules] == [500]
    assert rules[0]["remaining"] == 1


async def test_seed_shown_when_not_given(anyrun: httpx.AsyncClient) -> None:
    rules = (await add_rule(anyrun, {"path_prefix": "/v1/", "status": 503}))["faults"]
    assert isinstance(rules[0]["seed"], int)
    assert rules[0]["probability"] == 1.0


# Injected counts


async def test_stats_outlive_rules(anyrun: httpx.AsyncClient) -> None:
    before = await injected(anyrun)
    await add_rule(
        anyrun,
        [
            {"path_prefix": "/v1/user", "status": 503, "times": 2},
            {"path_prefix": "/v1/analysis", "delay_seconds": 0.01},
        ],
    )
    for _ in range(3):
        await anyrun.get("/v1/user")
    await anyrun.get("/v1/analysis")
    after_use = await injected(anyrun)
    rules_left = await listed_rules(anyrun)
    await anyrun.delete("/_emulator/faults")
    after_delete = await injected(anyrun)
    await anyrun.post("/_emulator/reset")
    after_reset = await injected(anyrun)
    assert before == {
        "status": 0,
        "delay": 0,
        "reset": 0,
        "reset_after": 0,
        "late": 0,
        "cut_stream": 0,
    }
    assert rules_left == []
    assert after_use["status"] == 2
    assert after_use["delay"] == 1
    assert after_delete == after_use
    assert after_reset == before


async def test_stats_sentinel_kinds(sentinel: httpx.AsyncClient) -> None:
    counts = await injected(sentinel)
    assert counts["expire_token"] == 0
    assert counts["partial"] == 0


# Kinds per emulator


@pytest.mark.parametrize("kind", ["expire_token", "partial"])
async def test_anyrun_rejects_kind(anyrun: httpx.AsyncClient, kind: str) -> None:
    response = await anyrun.post(
        "/_emulator/faults", json={"path_prefix": "/v1/", "kind": kind}
    )
    message = response.json()["message"]
    assert response.status_code == 400
    assert f"kind '{kind}' is not supported by the anyrun emulator" in message
    assert await listed_rules(anyrun) == []


async def test_defender_rejects_partial(defender: httpx.AsyncClient) -> None:
    response = await defender.post(
        "/_emulator/faults", json={"path_prefix": "/api/", "kind": "partial"}
    )
    assert response.status_code == 400
    assert "not supported by the defender emulator" in response.json()["message"]


async def test_partial_skips_other_routes(sentinel: httpx.AsyncClient) -> None:
    await add_rule(sentinel, {"path_prefix": "/", "kind": "partial"})
    response = await sentinel.get(INCIDENT_ID, params=ARM_VERSION)
    rules = await listed_rules(sentinel)
    assert response.status_code == 200
    assert rules[0]["remaining"] == 1
    assert rules[0]["injected"] == 0


# Validation


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ({"status": 503}, "exactly one of path_prefix"),
        (
            {"path_prefix": "/v1/", "path_regex": "/v1/.*", "status": 503},
            "exactly one of path_prefix",
        ),
        ({"path_regex": "/v1/([", "status": 503}, "path_regex '/v1/([' is not a valid"),
        ({"path_regex": "", "status": 503}, "path_regex must be a non-empty string"),
        ({"path_regex": 5, "status": 503}, "path_regex must be a non-empty string"),
        ({"path_prefix": "/v1/", "status": 503, "probability": 0}, "probability"),
        ({"path_prefix": "/v1/", "status": 503, "probability": 1.5}, "probability"),
        ({"path_prefix": "/v1/", "status": 503, "probability": "half"}, "probability"),
        ({"path_prefix": "/v1/", "status": 503, "probability": True}, "probability"),
        ({"path_prefix": "/v1/", "status": 503, "seed": "abc"}, "seed"),
        ({"path_prefix": "/v1/", "status": 503, "seed": 1.5}, "seed"),
        ({"path_prefix": "/v1/", "status": 503, "seed": False}, "seed"),
        ({"path_prefix": "/v1/", "kind": "late"}, "a late rule needs delay_seconds"),
        (
            {"path_prefix": "/v1/", "kind": "late", "delay_seconds": 0},
            "a late rule needs delay_seconds",
        ),
        ({"path_prefix": "/v1/", "kind": "status"}, "a status rule needs a status"),
        (
            {"path_prefix": "/v1/", "kind": "reset", "status": 500},
            "status is used only by status rules",
        ),
        (
            {"path_prefix": "/v1/", "kind": "reset_after", "retry_after": 1},
            "retry_after is used only by status rules",
        ),
        (
            {"path_prefix": "/v1/", "kind": "cut_stream", "delay_seconds": 1},
            "delay_seconds is not used by kind 'cut_stream'",
        ),
        ({"path_prefix": "/v1/", "kind": "cut_stream", "events": -1}, "events must"),
        ({"path_prefix": "/v1/", "kind": "cut_stream", "events": 1.5}, "events must"),
        (
            {"path_prefix": "/v1/", "status": 503, "events": 2},
            "events is used only by cut_stream rules",
        ),
        (
            {"path_prefix": "/v1/", "status": 503, "fail_ratio": 0.5},
            "fail_ratio is used only by partial rules",
        ),
        ({"path_prefix": "/v1/", "kind": "explode"}, "kind must be one of"),
    ],
)
async def test_rule_rejected(
    anyrun: httpx.AsyncClient, rule: dict[str, Any], fragment: str
) -> None:
    response = await anyrun.post("/_emulator/faults", json=[rule])
    message = response.json()["message"]
    assert response.status_code == 400
    assert message.startswith("rule 0: ")
    assert fragment in message
    assert await listed_rules(anyrun) == []


@pytest.mark.parametrize("fail_ratio", [0, -0.5, 1.01, "all"])
async def test_fail_ratio_rejected(
    sentinel: httpx.AsyncClient, fail_ratio: Any
) -> None:
    rule = {"path_prefix": "/workspaces/", "kind": "partial", "fail_ratio": fail_ratio}
    response = await sentinel.post("/_emulator/faults", json=rule)
    assert response.status_code == 400
    assert "fail_ratio must be a number greater than 0" in response.json()["message"]


async def test_rule_defaults_shown(sentinel: httpx.AsyncClient) -> None:
    rules = (
        await add_rule(
            sentinel,
            [
                {"path_prefix": "/workspaces/", "kind": "partial"},
                {"path_prefix": "/subscriptions/", "kind": "cut_stream"},
            ],
        )
    )["faults"]
    assert rules[0]["fail_ratio"] == 0.5
    assert rules[0]["events"] is None
    assert rules[1]["events"] == 1
    assert rules[1]["fail_ratio"] is None
    assert all(rule["injected"] == 0 for rule in rules)
