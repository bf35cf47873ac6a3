"""Defender emulator: the Live Response library (list, upload, override, delete)."""

import hashlib

import httpx
import pytest

from emulators.defender.library import MAX_FILE_BYTES
from tests.emulators.conftest import BASH_SCRIPT, SCRIPTS_DIR, add_library_file

pytestmark = pytest.mark.timeout(30)


async def list_names(client: httpx.AsyncClient) -> list[str]:
    response = await client.get("/api/libraryfiles")
    assert response.status_code == 200
    return [item["fileName"] for item in response.json()["value"]]


async def test_library_starts_empty(defender: httpx.AsyncClient) -> None:
    response = await defender.get("/api/libraryfiles")
    assert response.json()["value"] == []
    assert response.json()["@odata.context"].endswith("#LibraryFiles")


async def test_library_upload_and_list(defender: httpx.AsyncClient) -> None:
    content = (SCRIPTS_DIR / BASH_SCRIPT).read_bytes()
    response = await add_library_file(
        defender,
        BASH_SCRIPT,
        Description="uploads one file",
        ParametersDescription="v1 envelope",
        HasParameters="true",
    )
    listed = (await defender.get("/api/libraryfiles")).json()["value"]
    entity = response.json()
    assert response.status_code == 200
    assert entity["fileName"] == BASH_SCRIPT
    assert entity["sha256"] == hashlib.sha256(content).hexdigest()
    assert entity["description"] == "uploads one file"
    assert entity["parametersDescription"] == "v1 envelope"
    assert entity["hasParameters"] is True
    assert entity["creationTime"].endswith("Z")
    assert [item["fileName"] for item in listed] == [BASH_SCRIPT]
    assert listed[0]["sha256"] == entity["sha256"]


async def test_library_override(defender: httpx.AsyncClient) -> None:
    first = await add_library_file(defender, "tool.sh", b"echo one\n")
    rejected = await add_library_file(
        defender, "tool.sh", b"echo two\n", OverrideIfExists="false"
    )
    default_rejected = await defender.post(
        "/api/libraryfiles",
        files={"file": ("tool.sh", b"echo three\n", "application/octet-stream")},
    )
    after_rejection = (await defender.get("/api/libraryfiles")).json()["value"]
    replaced = await add_library_file(defender, "tool.sh", b"echo four\n")
    assert first.status_code == 200
    assert rejected.status_code == 400
    assert "OverrideIfExists" in rejected.json()["error"]["message"]
    assert default_rejected.status_code == 400
    assert after_rejection[0]["sha256"] == hashlib.sha256(b"echo one\n").hexdigest()
    assert replaced.status_code == 200
    assert replaced.json()["sha256"] == hashlib.sha256(b"echo four\n").hexdigest()
    assert replaced.json()["creationTime"] == first.json()["creationTime"]
    assert await list_names(defender) == ["tool.sh"]


async def test_library_delete(defender: httpx.AsyncClient) -> None:
    await add_library_file(defender, "tool.sh", b"echo one\n")
    deleted = await defender.delete("/api/libraryfiles/tool.sh")
    again = await defender.delete("/api/libraryfiles/tool.sh")
    assert deleted.status_code == 204
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "ResourceNotFound"
    assert await list_names(defender) == []


@pytest.mark.parametrize("name", ["my script.sh", "tool;rm.sh", "caf\u00e9.sh"])
async def test_library_invalid_name(defender: httpx.AsyncClient, name: str) -> None:
    response = await add_library_file(defender, name, b"echo\n")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidInput"
    assert await list_names(defender) == []


async def test_library_missing_file(defender: httpx.AsyncClient) -> None:
    response = await defender.post(
        "/api/libraryfiles",
        files={"Description": (None, "no file here")},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MissingRequiredParameter"


async def test_library_json_body(defender: httpx.AsyncClient) -> None:
    response = await defender.post("/api/libraryfiles", json={"file": "x"})
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["error"]["message"]


async def test_library_empty_file(defender: httpx.AsyncClient) -> None:
    response = await add_library_file(defender, "empty.sh", b"")
    assert response.status_code == 400
    assert "empty" in response.json()["error"]["message"]


async def test_library_bad_boolean(defender: httpx.AsyncClient) -> None:
    response = await add_library_file(
        defender, "tool.sh", b"echo\n", HasParameters="yes"
    )
    assert response.status_code == 400
    assert "HasParameters" in response.json()["error"]["message"]


async def test_library_too_large(defender: httpx.AsyncClient) -> None:
    response = await add_library_file(defender, "big.bin", b"\0" * (MAX_FILE_BYTES + 1))
    just_fits = await add_library_file(defender, "fits.bin", b"\0" * MAX_FILE_BYTES)
    assert response.status_code == 400
    assert "20 MB" in response.json()["error"]["message"]
    assert just_fits.status_code == 200
    assert await list_names(defender) == ["fits.bin"]


async def test_library_reset(defender: httpx.AsyncClient) -> None:
    await add_library_file(defender, "tool.sh", b"echo\n")
    await defender.post("/_emulator/reset")
    assert await list_names(defender) == []
