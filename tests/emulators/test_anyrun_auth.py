"""ANY.RUN emulator authentication: the API-Key header and its variants."""

import httpx
import pytest

from emulators import RunningEmulators
from tests.emulators.conftest import API_KEY, bare_client

pytestmark = pytest.mark.timeout(30)

AUTH_ERROR = {
    "error": True,
    "message": "Authentication required to access this resource",
}


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "API-Key wrong-key",
        f"Bearer {API_KEY}",
        "API-Key",
        API_KEY,
        f"Basic {API_KEY}",
    ],
    ids=["missing", "wrong-key", "bearer", "no-key", "no-scheme", "basic"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/user"),
        ("POST", "/v1/analysis"),
        ("GET", "/v1/analysis"),
        ("GET", "/v1/analysis/monitor/0ec0a4cc-72a4-41b9-8a13-9f283b3b4e15"),
        ("GET", "/report/0ec0a4cc-72a4-41b9-8a13-9f283b3b4e15/ioc/json"),
    ],
)
async def test_auth_rejected(
    emulators: RunningEmulators, authorization: str | None, method: str, path: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with bare_client(emulators.anyrun_url) as client:
        response = await client.request(method, path, headers=headers)
    assert response.status_code == 401
    assert response.json() == AUTH_ERROR


@pytest.mark.parametrize("scheme", ["API-Key", "API-KEY", "api-key", "Api-Key"])
async def test_auth_scheme_case(emulators: RunningEmulators, scheme: str) -> None:
    async with bare_client(emulators.anyrun_url) as client:
        response = await client.get(
            "/v1/user", headers={"Authorization": f"{scheme} {API_KEY}"}
        )
    assert response.status_code == 200


async def test_auth_control_routes_open(emulators: RunningEmulators) -> None:
    async with bare_client(emulators.anyrun_url) as client:
        response = await client.get("/_emulator/state")
    assert response.status_code == 200


async def test_auth_unknown_route(anyrun: httpx.AsyncClient) -> None:
    response = await anyrun.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] is True
