"""POST /v1/analysis: parameter validation, URL and file submissions, reruns."""

import hashlib
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulators import RunningEmulators
from tests.emulators.conftest import (
    CLEAN_URL,
    EICAR,
    EICAR_SHA256,
    submit_url,
    wait_until_finished,
)

pytestmark = pytest.mark.timeout(30)

VALID_URL_BODY = {"obj_type": "url", "obj_url": CLEAN_URL}

# (field named in the error, parameters that replace or extend VALID_URL_BODY)
BAD_PARAMETERS: list[tuple[str, dict[str, Any]]] = [
    ("obj_type", {"obj_type": "email"}),
    ("obj_type", {"obj_type": None}),
    ("obj_url", {"obj_url": ""}),
    ("obj_url", {"obj_url": "a.io"}),
    ("obj_url", {"obj_url": "http://" + "a" * 506}),
    ("obj_url", {"obj_url": ["https://www.example.com/"]}),
    ("file", {"obj_type": "file"}),
    ("env_os", {"env_os": "ubuntu"}),
    ("env_os", {"env_os": "Windows"}),
    ("env_version", {"env_version": "xp"}),
    ("env_version", {"env_os": "linux", "env_version": "10"}),
    ("env_version", {"env_os": "macos", "env_version": "14"}),
    ("env_bitness", {"env_bitness": 48}),
    ("env_bitness", {"env_version": "11", "env_bitness": 32}),
    ("env_bitness", {"env_version": "server 2025", "env_bitness": "32"}),
    ("env_bitness", {"env_os": "linux", "env_bitness": "32"}),
    ("env_type", {"env_type": "office"}),
    ("env_type", {"env_type": "development", "env_version": "11"}),
    ("env_type", {"env_type": "development", "env_bitness": 32}),
    ("env_locale", {"env_locale": "en_US!"}),
    ("opt_timeout", {"opt_timeout": 9}),
    ("opt_timeout", {"opt_timeout": 661}),
    ("opt_timeout", {"opt_timeout": "two minutes"}),
    ("opt_timeout", {"opt_timeout": True}),
    ("opt_privacy_type", {"opt_privacy_type": "secret"}),
    ("opt_network_connect", {"opt_network_connect": "yes"}),
    ("opt_network_fakenet", {"opt_network_fakenet": 1}),
    ("opt_network_tor", {"opt_network_tor": "on"}),
    ("opt_network_mitm", {"opt_network_mitm": "maybe"}),
    ("opt_network_residential_proxy", {"opt_network_residential_proxy": "1"}),
    ("opt_network_geo", {"opt_network_geo": "Germany"}),
    ("opt_network_residential_proxy_geo", {"opt_network_residential_proxy_geo": "DEU"}),
    ("opt_auto_delete_after", {"opt_auto_delete_after": "year"}),
    ("opt_kernel_heavyevasion", {"env_os": "macos", "opt_kernel_heavyevasion": True}),
    ("obj_ext_browser", {"obj_ext_browser": "Safari"}),
    ("obj_ext_browser", {"env_os": "linux", "obj_ext_browser": "Microsoft Edge"}),
    ("obj_ext_browser", {"env_os": "android", "obj_ext_browser": "Google Chrome"}),
    ("obj_ext_startfolder", {"obj_ext_startfolder": "documents"}),
    ("obj_ext_startfolder", {"env_os": "linux", "obj_ext_startfolder": "appdata"}),
    ("obj_ext_startfolder", {"env_os": "android", "obj_ext_startfolder": "temp"}),
    ("obj_ext_cmd", {"obj_ext_cmd": "x"}),
    ("obj_ext_useragent", {"obj_ext_useragent": "u" * 257}),
    ("auto_confirm_uac", {"env_os": "linux", "auto_confirm_uac": "true"}),
    ("run_as_root", {"run_as_root": True}),
    ("obj_force_elevation", {"obj_force_elevation": True}),
    ("user_tags", {"user_tags": "bad tag"}),
    ("user_tags", {"user_tags": "tag_1"}),
    ("user_tags", {"user_tags": "a" * 17}),
    ("user_tags", {"user_tags": ",".join(f"t{i}" for i in range(9))}),
    ("user_tags", {"user_tags": "one,,two"}),
    ("user_tags", {"user_tags": ["one", "two"]}),
    ("task_rerun_uuid", {"obj_type": "rerun", "obj_url": None}),
    ("task_rerun_uuid", {"obj_type": "rerun", "task_rerun_uuid": "not-a-uuid"}),
    (
        "task_rerun_uuid",
        {
            "obj_type": "rerun",
            "task_rerun_uuid": "0ec0a4cc-72a4-41b9-8a13-9f283b3b4e15",
        },
    ),
]


@pytest.mark.parametrize(
    ("field", "overrides"),
    BAD_PARAMETERS,
    ids=[f"{field}-{index}" for index, (field, _) in enumerate(BAD_PARAMETERS)],
)
async def test_submit_bad_parameter(
    anyrun: httpx.AsyncClient, field: str, overrides: dict[str, Any]
) -> None:
    body = {**VALID_URL_BODY, **overrides}
    response = await anyrun.post("/v1/analysis", json=body)
    assert response.status_code == 400
    assert response.json()["error"] is True
    assert response.json()["message"].startswith(f"{field}: ")


GOOD_PARAMETERS: list[dict[str, Any]] = [
    {},
    {"env_os": "windows", "env_version": "7", "env_bitness": 32},
    {"env_os": "windows", "env_version": "server 2025", "env_bitness": "64"},
    {"env_type": "development", "env_version": "10", "env_bitness": 64},
    {"env_os": "linux", "env_version": "22.04.2", "obj_ext_browser": "Mozilla Firefox"},
    {"env_os": "linux", "env_version": "12.2", "run_as_root": "true"},
    {"env_os": "android"},
    {"env_os": "macos", "obj_ext_browser": "Safari"},
    {"env_locale": "de-DE", "opt_network_geo": "de", "opt_timeout": "660"},
    {"env_locale": "Germany", "opt_auto_delete_after": "2 weeks"},
    {"user_tags": "sentinel-inc,a1b2c3d4e5f6a7b8,x,y,z,w,v,u"},
    {"obj_ext_cmd": "", "opt_auto_delete_after": ""},
]


@pytest.mark.parametrize("overrides", GOOD_PARAMETERS)
async def test_submit_good_parameters(
    anyrun: httpx.AsyncClient, overrides: dict[str, Any]
) -> None:
    response = await anyrun.post("/v1/analysis", json={**VALID_URL_BODY, **overrides})
    assert response.status_code == 200, response.text
    assert response.json()["error"] is False


async def test_submit_returns_uuid(anyrun: httpx.AsyncClient) -> None:
    response = await anyrun.post("/v1/analysis", json=VALID_URL_BODY)
    data = response.json()["data"]
    assert response.status_code == 200
    assert len(data["taskid"]) == 36
    assert data["taskid"].count("-") == 4


async def test_submit_logic_app_strings(anyrun: httpx.AsyncClient) -> None:
    # The Logic Apps send every value, booleans and numbers included, as a string.
    body = {
        "obj_type": "url",
        "obj_url": CLEAN_URL,
        "opt_timeout": "120",
        "obj_ext_browser": "Microsoft Edge",
        "env_os": "windows",
        "env_bitness": "64",
        "env_version": "10",
        "opt_automated_interactivity": "true",
        "auto_confirm_uac": "true",
        "opt_network_connect": "false",
        "opt_network_tor": "FALSE",
    }
    task_id = (await anyrun.post("/v1/analysis", json=body)).json()["data"]["taskid"]
    await wait_until_finished(anyrun, task_id)
    options = (await anyrun.get(f"/v1/analysis/{task_id}")).json()["data"]["analysis"][
        "options"
    ]
    assert options["network"] is False
    assert options["automatization"]["uac"] is True
    assert options["automatization"]["interactivity"] is True
    assert options["tor"]["used"] is False
    assert options["timeout"] == 120


async def test_submit_form_urlencoded(anyrun: httpx.AsyncClient) -> None:
    response = await anyrun.post(
        "/v1/analysis", data={"obj_type": "url", "obj_url": CLEAN_URL}
    )
    assert response.status_code == 200


async def test_submit_wrong_content_type(anyrun: httpx.AsyncClient) -> None:
    response = await anyrun.post(
        "/v1/analysis", content=b"obj_url", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 400
    assert "Content-Type" in response.json()["message"]


async def test_submit_invalid_json(anyrun: httpx.AsyncClient) -> None:
    response = await anyrun.post(
        "/v1/analysis",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"] is True


async def test_submit_file_hashes(
    anyrun: httpx.AsyncClient, emulators: RunningEmulators
) -> None:
    content = bytes(range(256)) * 12_000 + b"tail"
    response = await anyrun.post(
        "/v1/analysis",
        files={"file": ("sample.bin", content, "application/octet-stream")},
        data={"obj_type": "file", "opt_timeout": "10"},
    )
    assert response.status_code == 200, response.text
    task_id = response.json()["data"]["taskid"]
    await wait_until_finished(anyrun, task_id)
    main = (await anyrun.get(f"/v1/analysis/{task_id}")).json()["data"]["analysis"][
        "content"
    ]["mainObject"]
    assert main["type"] == "file"
    assert main["filename"] == "sample.bin"
    assert main["hashes"]["sha256"] == hashlib.sha256(content).hexdigest()
    assert (
        main["hashes"]["sha1"]
        == hashlib.sha1(content, usedforsecurity=False).hexdigest()
    )
    assert (
        main["hashes"]["md5"] == hashlib.md5(content, usedforsecurity=False).hexdigest()
    )
    state = (await anyrun.get("/_emulator/state")).json()
    assert state["tasks"][0]["obj"]["size"] == len(content)


async def test_submit_file_default_type(anyrun: httpx.AsyncClient) -> None:
    # Without obj_type, a multipart body with a file is a file submission.
    response = await anyrun.post("/v1/analysis", files={"file": ("a.txt", b"hello")})
    assert response.status_code == 200, response.text


async def test_submit_file_empty(anyrun: httpx.AsyncClient) -> None:
    response = await anyrun.post("/v1/analysis", files={"file": ("empty.bin", b"")})
    assert response.status_code == 400
    assert response.json()["message"].startswith("file: ")


async def test_submit_file_with_url_type(anyrun: httpx.AsyncClient) -> None:
    response = await anyrun.post(
        "/v1/analysis",
        files={"file": ("a.txt", b"hello")},
        data={"obj_type": "url", "obj_url": CLEAN_URL},
    )
    assert response.status_code == 400
    assert response.json()["message"].startswith("file: ")


async def test_submit_multipart_without_file(anyrun: httpx.AsyncClient) -> None:
    response = await anyrun.post(
        "/v1/analysis",
        files={"note": (None, "no file here")},
        data={"obj_type": "file"},
    )
    assert response.status_code == 400
    assert response.json()["message"].startswith("file: ")


async def test_submit_file_bad_field(anyrun: httpx.AsyncClient) -> None:
    response = await anyrun.post(
        "/v1/analysis",
        files={"file": ("a.exe", b"MZ\x90\x00")},
        data={"env_os": "linux", "obj_ext_startfolder": "windows"},
    )
    assert response.status_code == 400
    assert response.json()["message"].startswith("obj_ext_startfolder: ")


async def test_submit_eicar_file(anyrun: httpx.AsyncClient) -> None:
    response = await anyrun.post(
        "/v1/analysis",
        files={"file": ("eicar.com", EICAR)},
        data={"opt_timeout": "10", "obj_force_elevation": "true"},
    )
    task_id = response.json()["data"]["taskid"]
    last = await wait_until_finished(anyrun, task_id)
    report = (await anyrun.get(f"/v1/analysis/{task_id}")).json()["data"]
    iocs = (await anyrun.get(f"/report/{task_id}/ioc/json")).json()
    assert last["task"]["scores"]["verdict"]["text"] == "Malicious activity"
    assert report["analysis"]["scores"]["verdict"]["score"] == 100
    assert report["analysis"]["tags"] == [{"tag": "eicar"}]
    assert report["analysis"]["content"]["mainObject"]["info"]["file"] == (
        "EICAR virus test files"
    )
    assert {"type": "sha256", "ioc": EICAR_SHA256, "reputation": 2} in [
        {key: item[key] for key in ("type", "ioc", "reputation")} for item in iocs
    ]


async def test_submit_file_streams(anyrun: httpx.AsyncClient, tmp_path: Path) -> None:
    # A 48 MiB upload must not be held in memory: the emulator hashes each chunk.
    size = 48 * 1024 * 1024
    path = tmp_path / "big.bin"
    block = hashlib.sha256(b"seed").digest() * 32768
    expected = hashlib.sha256()
    with path.open("wb") as output:
        for _ in range(size // len(block)):
            output.write(block)
            expected.update(block)
    tracemalloc.start()
    try:
        with path.open("rb") as upload:
            response = await anyrun.post(
                "/v1/analysis",
                files={"file": ("big.bin", upload, "application/octet-stream")},
                timeout=60.0,
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 200, response.text
    state = (await anyrun.get("/_emulator/state")).json()
    assert state["tasks"][-1]["obj"]["sha256"] == expected.hexdigest()
    assert peak < 8 * 1024 * 1024


async def test_submit_rerun(anyrun: httpx.AsyncClient) -> None:
    original = await submit_url(anyrun, CLEAN_URL, opt_timeout=30)
    response = await anyrun.post(
        "/v1/analysis", json={"obj_type": "rerun", "task_rerun_uuid": original}
    )
    assert response.status_code == 200, response.text
    state = (await anyrun.get("/_emulator/state")).json()
    rerun = state["tasks"][-1]
    assert rerun["obj"] == {"type": "url", "url": CLEAN_URL}
    assert rerun["duration"] == 30
