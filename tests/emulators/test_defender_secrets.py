"""Defender emulator: the SAS URL of a RunScript never shows outside the script run.

The checks look for the SAS signature (``sig=`` value, encoded and decoded),
the URL, its query string and the whole Args value. They search every log
record of the process, the request log, every view of the actions, the state
and upload routes, and the downloaded script results.
"""

import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import httpx
import pytest

from clients.storage import UploadStore
from emulators import RunningEmulators
from emulators.defender import envelope
from tests.azurite import CONTAINER, DEV_ACCOUNT, DEV_ACCOUNT_KEY, Azurite
from tests.emulators.conftest import (
    BASH_SCRIPT,
    LINUX_DISK_ID,
    LINUX_DISK_PATH,
    LINUX_DISK_SHA256,
    POWERSHELL_SCRIPT,
    WINDOWS_ID,
    WINDOWS_PATH,
    WINDOWS_SHA256,
    StartEmulators,
    add_library_file,
    defender_client,
    script_result,
    start_script,
    wait_for_action,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def plain_log_records() -> Iterator[None]:
    """Remove process-wide log redaction for the test.

    The connector's clients.redaction.install() redacts every record of the
    process once a test has called it. Without it, only the emulator's own
    redaction keeps the SAS signature out of the log.
    """
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    yield
    logging.setLogRecordFactory(factory)


def sas_url(azurite: Azurite, blob: str) -> str:
    store = UploadStore(
        f"http://127.0.0.1:{azurite.port}/{DEV_ACCOUNT}",
        CONTAINER,
        credential=None,
        account_key=DEV_ACCOUNT_KEY,
    )
    return store.upload_url(blob, datetime.now(UTC) + timedelta(minutes=30))


def secrets_of(url: str, argument: str) -> list[str]:
    match = re.search(r"[?&]sig=([^&]+)", url)
    assert match is not None
    signature = match.group(1)
    return [signature, unquote(signature), url, url.partition("?")[2], argument]


async def collect_views(client: httpx.AsyncClient, action_ids: list[str]) -> list[str]:
    """Return the text of every route that shows actions, uploads or results."""
    texts = []
    for path in (
        "/_emulator/requests",
        "/_emulator/state",
        "/_emulator/uploads",
        "/api/machineactions",
    ):
        texts.append((await client.get(path)).text)
    async with httpx.AsyncClient(trust_env=False, timeout=10.0) as bare:
        for action_id in action_ids:
            texts.append((await client.get(f"/api/machineactions/{action_id}")).text)
            link = await client.get(
                f"/api/machineactions/{action_id}/"
                "GetLiveResponseResultDownloadLink(index=0)"
            )
            texts.append(link.text)
            texts.append((await bare.get(link.json()["value"])).text)
    return texts


async def test_sas_signature_hidden(
    defender: httpx.AsyncClient,
    emulators: RunningEmulators,
    azurite: Azurite,
    caplog: pytest.LogCaptureFixture,
    plain_log_records: None,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")
    await add_library_file(defender, BASH_SCRIPT)
    await add_library_file(defender, POWERSHELL_SCRIPT)
    runs = [
        # An upload and a failure on each OS: the failures quote their input.
        (LINUX_DISK_ID, BASH_SCRIPT, LINUX_DISK_PATH, LINUX_DISK_SHA256, "Succeeded"),
        (LINUX_DISK_ID, BASH_SCRIPT, "/no/such/file", LINUX_DISK_SHA256, "Failed"),
        (WINDOWS_ID, POWERSHELL_SCRIPT, WINDOWS_PATH, WINDOWS_SHA256, "Succeeded"),
        (WINDOWS_ID, POWERSHELL_SCRIPT, WINDOWS_PATH, "0" * 64, "Failed"),
    ]
    secrets: list[str] = []
    action_ids = []
    for machine_id, script, path, sha256, expected in runs:
        url = sas_url(azurite, azurite.new_blob_name())
        argument = envelope.encode({"path": path, "sha256": sha256, "url": url})
        secrets += secrets_of(url, argument)
        action_id = await start_script(defender, machine_id, script, argument)
        action = await wait_for_action(defender, action_id)
        assert action["status"] == expected, json.dumps(action)
        action_ids.append(action_id)

    texts = await collect_views(defender, action_ids)
    log_lines = [record.getMessage() for record in caplog.records]
    log_lines += [caplog.text]
    httpx_puts = [line for line in log_lines if line.startswith("HTTP Request: PUT")]

    # The Windows upload went through httpx, whose request log line has the URL.
    assert len(httpx_puts) == 1
    assert "sig=<redacted>" in httpx_puts[0]
    for secret in secrets:
        for text in texts:
            assert secret not in text
        for line in log_lines:
            assert secret not in line


async def test_args_redacted_in_action(defender: httpx.AsyncClient) -> None:
    await add_library_file(defender, POWERSHELL_SCRIPT)
    argument = envelope.encode(
        {
            "path": WINDOWS_PATH,
            "sha256": WINDOWS_SHA256,
            "url": "http://127.0.0.1:9/c/b?sig=s3cret",
        }
    )
    response = await defender.post(
        f"/api/machines/{WINDOWS_ID}/runliveresponse",
        json={
            "Commands": [
                {
                    "type": "RunScript",
                    "params": [
                        {"key": "ScriptName", "value": POWERSHELL_SCRIPT},
                        {"key": "Args", "value": argument},
                    ],
                }
            ],
            "Comment": "redaction",
        },
    )
    params = response.json()["commands"][0]["command"]["params"]
    assert params[0] == {"key": "ScriptName", "value": POWERSHELL_SCRIPT}
    assert params[1]["key"] == "Args"
    assert params[1]["value"].startswith("<redacted")
    assert argument not in response.text


# Decodes its v1 argument and prints the JSON, SAS URL included.
PRINT_ARGUMENT_SCRIPT = b"""#!/bin/bash
payload=${1#v1.}
payload=${payload//-/+}
payload=${payload//_//}
while ((${#payload} % 4)); do payload+="="; done
printf '%s' "$payload" | base64 -d
echo
printf 'sig=s3cret-on-stderr\\n' >&2
"""


async def test_script_output_redacted(start: StartEmulators) -> None:
    running = await start(defender_run_any_script=True)
    url = "http://127.0.0.1:9/evidence/b.bin?sv=2021-08-06&sig=s3cret"
    argument = envelope.encode({"path": LINUX_DISK_PATH, "url": url})
    async with defender_client(running) as client:
        await add_library_file(client, "print.sh", PRINT_ARGUMENT_SCRIPT)
        action_id = await start_script(client, LINUX_DISK_ID, "print.sh", argument)
        action = await wait_for_action(client, action_id)
        result = await script_result(client, action_id)
    printed = json.loads(result["script_output"])
    assert action["status"] == "Succeeded"
    assert printed["url"] == "<url>"
    assert printed["path"] == LINUX_DISK_PATH
    assert "s3cret" not in result["script_output"]
    assert "s3cret" not in result["script_errors"]
    assert "sig=<redacted>" in result["script_errors"]
