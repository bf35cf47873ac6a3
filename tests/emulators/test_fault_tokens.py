"""Bearer token forms and the expire_token fault (Sentinel and Defender)."""

import logging

import httpx
import pytest

from emulators import RunningEmulators
from tests.emulators.conftest import (
    ARM_VERSION,
    BEARER_TOKEN,
    INCIDENT_ID,
    TI_VERSION,
    WINDOWS_ID,
    WORKSPACE_ID,
    bare_client,
)

pytestmark = pytest.mark.timeout(30)

EXPIRED_CHALLENGE = (
    'Bearer error="invalid_token", error_description="The access token expired"'
)
FIRST_TOKEN = f"{BEARER_TOKEN}.first-token_0001"
SECOND_TOKEN = f"{BEARER_TOKEN}.second-token_0002"
UPLOAD_PATH = f"/workspaces/{WORKSPACE_ID}/threat-intelligence-stix-objects:upload"
# Emulator name -> (a path that needs a bearer token, its query parameters).
PROBES = {
    "sentinel": (INCIDENT_ID, ARM_VERSION),
    "defender": (f"/api/machines/{WINDOWS_ID}", {}),
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def probe(client: httpx.AsyncClient, emulator: str, token: str) -> httpx.Response:
    path, params = PROBES[emulator]
    return await client.get(path, params=params, headers=bearer(token))


# Token forms


@pytest.mark.parametrize("emulator", ["sentinel", "defender"])
@pytest.mark.parametrize(
    "token",
    [
        BEARER_TOKEN,
        f"{BEARER_TOKEN}.abcdEFGH",
        f"{BEARER_TOKEN}.a-b_c-d_0123",
        f"{BEARER_TOKEN}.{'x' * 64}",
    ],
)
async def test_token_accepted(
    emulators: RunningEmulators, emulator: str, token: str
) -> None:
    async with bare_client(emulators.urls[emulator]) as client:
        response = await probe(client, emulator, token)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("emulator", ["sentinel", "defender"])
@pytest.mark.parametrize(
    "token",
    [
        f"{BEARER_TOKEN}.abcdefg",  # suffix shorter than 8
        f"{BEARER_TOKEN}.{'x' * 65}",  # suffix longer than 64
        f"{BEARER_TOKEN}.abcd+efgh",  # character outside [A-Za-z0-9_-]
        f"{BEARER_TOKEN}.",
        f"{BEARER_TOKEN}abcdefgh",  # no dot
        f"{BEARER_TOKEN}:abcdefgh",
        f"x{BEARER_TOKEN[1:]}.abcdefgh",  # another base
        f"{BEARER_TOKEN[:-1]}.abcdefgh",
    ],
)
async def test_token_rejected(
    emulators: RunningEmulators, emulator: str, token: str
) -> None:
    async with bare_client(emulators.urls[emulator]) as client:
        response = await probe(client, emulator, token)
    assert response.status_code == 401
    assert "WWW-Authenticate" not in response.headers


# expire_token


async def test_expire_token_sentinel(emulators: RunningEmulators) -> None:
    async with bare_client(emulators.sentinel_url) as client:
        await client.post(
            "/_emulator/faults",
            json={"kind": "expire_token", "path_prefix": "/subscriptions/"},
        )
        expired = await probe(client, "sentinel", FIRST_TOKEN)
        again = await probe(client, "sentinel", FIRST_TOKEN)
        upload = await client.post(
            UPLOAD_PATH,
            params=TI_VERSION,
            json={"sourcesystem": "ANY.RUN-Sandbox", "stixobjects": []},
            headers=bearer(FIRST_TOKEN),
        )
        fresh = await probe(client, "sentinel", SECOND_TOKEN)
        stats = (await client.get("/_emulator/faults/stats")).json()["injected"]
    error = expired.json()["error"]
    assert expired.status_code == 401
    assert expired.headers["WWW-Authenticate"] == EXPIRED_CHALLENGE
    assert error["code"] == "ExpiredAuthenticationToken"
    assert "is earlier than current UTC time" in error["message"]
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "ExpiredAuthenticationToken"
    assert upload.status_code == 401
    assert upload.headers["WWW-Authenticate"] == EXPIRED_CHALLENGE
    assert fresh.status_code == 200
    assert stats["expire_token"] == 1


async def test_expire_token_defender(emulators: RunningEmulators) -> None:
    async with bare_client(emulators.defender_url) as client:
        await client.post(
            "/_emulator/faults",
            json={"kind": "expire_token", "path_prefix": "/api/machines/"},
        )
        expired = await probe(client, "defender", FIRST_TOKEN)
        hunting = await client.post(
            "/api/advancedqueries/run",
            json={"Query": "DeviceFileEvents | take 1"},
            headers=bearer(FIRST_TOKEN),
        )
        fresh = await probe(client, "defender", SECOND_TOKEN)
        rules = (await client.get("/_emulator/faults")).json()["faults"]
    error = expired.json()["error"]
    assert expired.status_code == 401
    assert expired.headers["WWW-Authenticate"] == EXPIRED_CHALLENGE
    assert error["code"] == "Unauthorized"
    assert "expired" in error["message"]
    assert error["target"]
    assert hunting.status_code == 401
    assert hunting.headers["WWW-Authenticate"] == EXPIRED_CHALLENGE
    assert fresh.status_code == 200
    assert rules == []


@pytest.mark.parametrize("emulator", ["sentinel", "defender"])
async def test_expire_base_token(emulators: RunningEmulators, emulator: str) -> None:
    async with bare_client(emulators.urls[emulator]) as client:
        await client.post(
            "/_emulator/faults", json={"kind": "expire_token", "path_prefix": "/"}
        )
        expired = await probe(client, emulator, BEARER_TOKEN)
        again = await probe(client, emulator, BEARER_TOKEN)
        suffixed = await probe(client, emulator, FIRST_TOKEN)
    assert expired.status_code == 401
    assert again.status_code == 401
    assert suffixed.status_code == 200


@pytest.mark.parametrize("emulator", ["sentinel", "defender"])
async def test_expire_cleared_by_reset(
    emulators: RunningEmulators, emulator: str
) -> None:
    async with bare_client(emulators.urls[emulator]) as client:
        await client.post(
            "/_emulator/faults", json={"kind": "expire_token", "path_prefix": "/"}
        )
        expired = await probe(client, emulator, FIRST_TOKEN)
        await client.delete("/_emulator/faults")
        still_expired = await probe(client, emulator, FIRST_TOKEN)
        await client.post("/_emulator/reset")
        after_reset = await probe(client, emulator, FIRST_TOKEN)
    assert expired.status_code == 401
    assert still_expired.status_code == 401
    assert after_reset.status_code == 200


@pytest.mark.parametrize("emulator", ["sentinel", "defender"])
async def test_expire_invalid_token_plain_401(
    emulators: RunningEmulators, emulator: str
) -> None:
    async with bare_client(emulators.urls[emulator]) as client:
        await client.post(
            "/_emulator/faults", json={"kind": "expire_token", "path_prefix": "/"}
        )
        wrong = await probe(client, emulator, "wrong-token")
        valid = await probe(client, emulator, FIRST_TOKEN)
    # The rule was used on the invalid token, which gets the ordinary 401.
    assert wrong.status_code == 401
    assert "WWW-Authenticate" not in wrong.headers
    assert valid.status_code == 200


@pytest.mark.parametrize("emulator", ["sentinel", "defender"])
async def test_expired_token_not_logged(
    emulators: RunningEmulators, emulator: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with bare_client(emulators.urls[emulator]) as client:
        await client.post(
            "/_emulator/faults", json={"kind": "expire_token", "path_prefix": "/"}
        )
        await probe(client, emulator, FIRST_TOKEN)
        await probe(client, emulator, FIRST_TOKEN)
        shown = [
            (await client.get(f"/_emulator/{route}")).text
            for route in ("requests", "state", "faults", "faults/stats")
        ]
    expiry_lines = [r for r in caplog.records if "expired" in r.getMessage()]
    assert expiry_lines
    assert BEARER_TOKEN not in caplog.text
    assert "first-token_0001" not in caplog.text
    for text in shown:
        assert BEARER_TOKEN not in text
