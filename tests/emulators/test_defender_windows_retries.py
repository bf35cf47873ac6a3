"""Defender emulator: retries of the Windows upload (anyrun-upload.ps1 in Python).

Each PUT is sent up to 5 times. A failure without a response (other than a
failed name lookup) and HTTP 408, 429, 500, 502, 503 and 504 are retried after
1, 2, 4 and 8 emulated seconds, and any other status fails at once. The storage
endpoints here are Azurite behind a forwarder that starts listening late, a
small aiohttp stand-in that returns planned statuses, and a bound port
that never listens. All of them are on 127.0.0.1.
"""

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from emulators import RunningEmulators
from emulators.clock import EmulatedClock
from emulators.defender import envelope, windows
from tests.azurite import CONTAINER, DEV_ACCOUNT, Azurite
from tests.emulators.conftest import (
    FINAL_ACTION_STATES,
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

WINDOWS_LOGGER = "emulators.defender.windows"
# The stand-in storage endpoints never check the signature, so any sig works.
FAKE_SIGNATURE = "c3RhbmQtaW4tc2lnbmF0dXJl"
FAKE_QUERY = f"sv=2021-08-06&sr=b&sp=cw&sig={FAKE_SIGNATURE}"
# Returned instead of a status by a plan: close the connection mid-body.
DROP = 0
DROP_AFTER_BYTES = 100_000


# Storage endpoints


Plan = Callable[[str, int], int]


@dataclass
class Received:
    key: str
    attempt: int
    body: bytes


@dataclass
class StandIn:
    """A stand-in Blob endpoint that responds to each request as ``plan`` sets.

    ``plan(key, attempt)`` returns the status for the ``attempt``-th request
    (from 1) with ``key``: "blob", "block:<id>" or "blocklist". DROP closes the
    connection after reading part of the body.
    """

    plan: Plan
    port: int = 0
    received: list[Received] = field(default_factory=list)

    def url(self, blob: str = "sample.bin") -> str:
        path = f"/{DEV_ACCOUNT}/{CONTAINER}/{blob}"
        return f"http://127.0.0.1:{self.port}{path}?{FAKE_QUERY}"

    def bodies(self, key: str) -> list[bytes]:
        return [item.body for item in self.received if item.key == key]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        comp = request.query.get("comp")
        if comp == "block":
            key = f"block:{request.query['blockid']}"
        else:
            key = comp or "blob"
        attempt = 1 + sum(1 for item in self.received if item.key == key)
        status = self.plan(key, attempt)
        if status == DROP:
            partial = await request.content.read(DROP_AFTER_BYTES)
            self.received.append(Received(key, attempt, partial))
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        body = await request.read()
        self.received.append(Received(key, attempt, body))
        headers = {}
        if status == 503:
            headers["x-ms-error-code"] = "ServerBusy"
        elif status == 403:
            headers["x-ms-error-code"] = "AuthorizationFailure"
        return web.Response(status=status, headers=headers)


@contextlib.asynccontextmanager
async def stand_in_endpoint(plan: Plan) -> AsyncIterator[StandIn]:
    endpoint = StandIn(plan)
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_put("/{tail:.*}", endpoint.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    endpoint.port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        yield endpoint
    finally:
        await asyncio.wait_for(runner.cleanup(), timeout=5)


class LateForwarder:
    """A TCP forwarder to ``target_port`` whose port refuses until ``open``.

    The socket is bound at once, so the port is reserved, but a bound socket
    that does not listen makes every connection attempt fail with
    ECONNREFUSED.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.accepted = 0
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def open(self) -> None:
        # start_server calls listen() on the bound socket.
        self._server = await asyncio.start_server(self._forward, sock=self._socket)

    async def close(self) -> None:
        if self._server is None:
            self._socket.close()
            return
        self._server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.wait_for(self._server.wait_closed(), timeout=5)

    async def _forward(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        self._writers += [client_writer, upstream_writer]
        await asyncio.gather(
            _pipe(client_reader, upstream_writer),
            _pipe(upstream_reader, client_writer),
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """Yield a 127.0.0.1 port that is bound but never listens, so it refuses."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# Helpers


def azurite_url(azurite: Azurite, port: int, blob: str) -> str:
    """Return a create-and-write SAS URL for ``blob`` in Azurite, via ``port``.

    Azurite checks the signature over account, container and blob, not over
    the host and port, so the URL may point at a forwarder.
    """
    url = azurite.sas_url(blob)
    direct = f"http://127.0.0.1:{azurite.port}/"
    assert url.startswith(direct)
    return f"http://127.0.0.1:{port}/" + url[len(direct) :]


def catalogue_file(running: RunningEmulators) -> bytes:
    device = running.defender.devices[WINDOWS_ID]
    on_disk = device.windows_disk_path(WINDOWS_PATH)
    assert on_disk is not None
    return on_disk.read_bytes()


def retry_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == WINDOWS_LOGGER and "retrying in" in record.getMessage()
    ]


async def run_upload(
    client: httpx.AsyncClient,
    url: str,
    path: str = WINDOWS_PATH,
    sha256: str = WINDOWS_SHA256,
    poll_seconds: float | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Run anyrun-upload.ps1 on the Windows device; return action, result, line.

    At low speeds ``poll_seconds`` must be long enough to stay under the
    emulator's limit of 100 calls per emulated minute.
    """
    argument = envelope.encode({"path": path, "sha256": sha256, "url": url})
    await add_library_file(client, POWERSHELL_SCRIPT)
    action_id = await start_script(client, WINDOWS_ID, POWERSHELL_SCRIPT, argument)
    if poll_seconds is None:
        action = await wait_for_action(client, action_id, timeout=30)
    else:
        action = await poll_action(client, action_id, poll_seconds)
    result = await script_result(client, action_id)
    line = json.loads(result["script_output"].splitlines()[1])
    return action, result, line


async def poll_action(
    client: httpx.AsyncClient,
    action_id: str,
    poll_seconds: float,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Poll the machine action every ``poll_seconds`` until it is final."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await client.get(f"/api/machineactions/{action_id}")
        assert response.status_code == 200, response.text
        action = response.json()
        if action["status"] in FINAL_ACTION_STATES:
            return action
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"action {action_id} is {action['status']} after {timeout} s")
        await asyncio.sleep(poll_seconds)


async def wait_for_warning(
    caplog: pytest.LogCaptureFixture, text: str, timeout: float = 20.0
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not any(text in warning for warning in retry_warnings(caplog)):
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"no retry warning with {text!r} within {timeout} s")
        await asyncio.sleep(0.01)


# Through the Defender emulator


async def test_retry_until_endpoint_listens(
    start: StartEmulators, azurite: Azurite, caplog: pytest.LogCaptureFixture
) -> None:
    # At speed 4 the four waits of 1, 2, 4 and 8 emulated seconds take 0.25,
    # 0.5, 1 and 2 wall seconds, so attempts 2 to 5 start 0.25, 0.75, 1.75 and
    # 3.75 s after the first failure. The forwarder opens 1.5 s after it, so
    # attempt 4, or else attempt 5, gets through.
    caplog.set_level(logging.WARNING, logger=WINDOWS_LOGGER)
    running = await start(speed=4)
    blob = azurite.new_blob_name()
    forwarder = LateForwarder(azurite.port)
    try:
        async with defender_client(running) as client:
            upload = asyncio.create_task(
                run_upload(
                    client,
                    azurite_url(azurite, forwarder.port, blob),
                    poll_seconds=0.25,
                )
            )
            await wait_for_warning(caplog, "Put Blob failed: ConnectFailure")
            await asyncio.sleep(1.5)
            await forwarder.open()
            action, result, line = await asyncio.wait_for(upload, timeout=30)
    finally:
        await forwarder.close()
    warnings = retry_warnings(caplog)

    assert action["status"] == "Succeeded"
    assert result["exit_code"] == 0
    assert line["status"] == "uploaded"
    assert azurite.blob(blob).download_blob().readall() == catalogue_file(running)
    assert forwarder.accepted >= 1
    assert 1 <= len(warnings) <= 4
    assert all("Put Blob failed: ConnectFailure" in warning for warning in warnings)
    assert all(WINDOWS_ID in warning for warning in warnings)


async def test_retry_after_503(
    emulators: RunningEmulators,
    defender: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=WINDOWS_LOGGER)
    content = catalogue_file(emulators)

    async with stand_in_endpoint(
        lambda key, attempt: 503 if attempt <= 3 else 201
    ) as endpoint:
        action, result, line = await run_upload(defender, endpoint.url())
    warnings = retry_warnings(caplog)

    assert action["status"] == "Succeeded"
    assert line == {
        "status": "uploaded",
        "size": len(content),
        "sha256": WINDOWS_SHA256,
        "source": "disk",
    }
    # Every attempt sends the whole file again.
    assert endpoint.bodies("blob") == [content] * 4
    assert len(warnings) == 3
    assert "Put Blob returned HTTP 503 (ServerBusy); retrying in 1 s" in warnings[0]
    assert "retrying in 2 s (attempt 3 of 5)" in warnings[1]
    assert "retrying in 4 s (attempt 4 of 5)" in warnings[2]
    assert all(FAKE_SIGNATURE not in warning for warning in warnings)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_retried_statuses(defender: httpx.AsyncClient, status: int) -> None:
    async with stand_in_endpoint(
        lambda key, attempt: status if attempt == 1 else 201
    ) as endpoint:
        action, _, line = await run_upload(defender, endpoint.url())

    assert action["status"] == "Succeeded"
    assert line["status"] == "uploaded"
    assert len(endpoint.received) == 2


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (403, "Put Blob returned HTTP 403 (AuthorizationFailure)"),
        (404, "Put Blob returned HTTP 404"),
        (409, "Put Blob returned HTTP 409"),
        (501, "Put Blob returned HTTP 501"),
        (200, "Put Blob returned HTTP 200"),
    ],
)
async def test_other_status_fails_at_once(
    defender: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    status: int,
    message: str,
) -> None:
    caplog.set_level(logging.WARNING, logger=WINDOWS_LOGGER)

    async with stand_in_endpoint(lambda key, attempt: status) as endpoint:
        action, result, line = await run_upload(defender, endpoint.url())

    assert action["status"] == "Failed"
    assert result["exit_code"] == 1
    assert line == {"status": "failed", "reason": "upload_failed", "message": message}
    assert len(endpoint.received) == 1
    assert retry_warnings(caplog) == []


async def test_refused_fails_after_5_attempts(
    defender: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=WINDOWS_LOGGER)

    with refusing_port() as port:
        url = f"http://127.0.0.1:{port}/{DEV_ACCOUNT}/{CONTAINER}/x.bin?{FAKE_QUERY}"
        action, result, line = await run_upload(defender, url)
    warnings = retry_warnings(caplog)

    assert action["status"] == "Failed"
    assert result["exit_code"] == 1
    assert line == {
        "status": "failed",
        "reason": "upload_failed",
        "message": "Put Blob failed: ConnectFailure after 5 attempts",
    }
    assert FAKE_SIGNATURE not in result["script_output"]
    assert len(warnings) == 4
    assert "attempt 5 of 5" in warnings[3]


async def test_retry_stops_at_time_budget(
    start: StartEmulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a budget of 6 emulated seconds, attempt 3 starts after about 3 s and
    # its retry would wait 4 s more, so the upload ends after 3 attempts. At
    # speed 5 the first attempt may start up to 0.6 wall seconds late without
    # changing that count.
    monkeypatch.setattr(windows, "TIME_BUDGET_SECONDS", 6.0)
    running = await start(speed=5)

    async with (
        defender_client(running) as client,
        stand_in_endpoint(lambda key, attempt: 503) as endpoint,
    ):
        action, _, line = await run_upload(client, endpoint.url(), poll_seconds=0.25)

    assert action["status"] == "Failed"
    assert line["reason"] == "upload_failed"
    assert line["message"] == (
        "Put Blob returned HTTP 503 (ServerBusy) after 3 attempts, with no time "
        "left in the budget of 6 s for a retry"
    )
    assert len(endpoint.received) == 3


async def test_block_retries_resend_block(
    emulators: RunningEmulators,
    defender: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Two blocks: the first attempt of block 1 loses its connection after
    # part of its 4 MiB body, and the first attempts of block 2 and of
    # Put Block List get HTTP 503 and 500.
    caplog.set_level(logging.WARNING, logger=WINDOWS_LOGGER)
    content = bytes(range(256)) * (windows.BLOCK_SIZE // 256) + b"tail" * 1000
    path = "C:\\Users\\j.doe\\Downloads\\large-sample.bin"
    stored = emulators.defender.devices[WINDOWS_ID].windows_disk_path(path)
    assert stored is not None
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(content)
    sha256 = hashlib.sha256(content).hexdigest()
    first_attempt_status = {
        f"block:{_block_id(0)}": DROP,
        f"block:{_block_id(1)}": 503,
        "blocklist": 500,
    }

    async with stand_in_endpoint(
        lambda key, attempt: first_attempt_status[key] if attempt == 1 else 201
    ) as endpoint:
        action, _, line = await run_upload(defender, endpoint.url(), path, sha256)
    warnings = retry_warnings(caplog)
    first_block = endpoint.bodies(f"block:{_block_id(0)}")
    second_block = endpoint.bodies(f"block:{_block_id(1)}")
    block_lists = endpoint.bodies("blocklist")

    assert action["status"] == "Succeeded"
    assert line["size"] == len(content)
    assert len(first_block) == 2
    assert 0 < len(first_block[0]) < windows.BLOCK_SIZE
    assert first_block[1] == content[: windows.BLOCK_SIZE]
    assert second_block == [content[windows.BLOCK_SIZE :]] * 2
    assert len(block_lists) == 2
    assert block_lists[0] == block_lists[1]
    assert block_lists[1].endswith(
        f"<Latest>{_block_id(0)}</Latest><Latest>{_block_id(1)}</Latest>"
        "</BlockList>".encode()
    )
    assert len(warnings) == 3
    assert "Put Block 1/2 failed: " in warnings[0]
    assert (
        "Put Block 2/2 returned HTTP 503 (ServerBusy); retrying in 1 s" in warnings[1]
    )
    assert "Put Block List returned HTTP 500; retrying in 1 s" in warnings[2]


def _block_id(index: int) -> str:
    return base64.b64encode(f"block-{index:06d}".encode()).decode()


# _BlobPut with a mock transport: which failures without a response are retried


@pytest.mark.parametrize(
    ("error", "status", "attempts"),
    [
        (httpx.ConnectError("refused"), "ConnectFailure", 5),
        (httpx.ConnectTimeout("slow"), "Timeout", 5),
        (httpx.ReadTimeout("slow"), "Timeout", 5),
        (httpx.RemoteProtocolError("closed"), "ConnectionClosed", 5),
        (httpx.ReadError("reset"), "ReceiveFailure", 5),
        (httpx.WriteError("broken pipe"), "SendFailure", 5),
        (httpx.UnsupportedProtocol("ftp"), "UnknownError", 1),
    ],
)
async def test_transport_errors(
    error: httpx.TransportError, status: str, attempts: int
) -> None:
    message, calls = await _put_with_error(error)

    assert calls == attempts
    suffix = " after 5 attempts" if attempts == 5 else ""
    assert message == f"Put Blob failed: {status}{suffix}"


async def test_name_lookup_not_retried() -> None:
    # httpx raises ConnectError for a failed lookup too, chained to the
    # socket.gaierror.
    error = httpx.ConnectError("lookup failed")
    error.__cause__ = socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    message, calls = await _put_with_error(error)

    assert calls == 1
    assert message == "Put Blob failed: NameResolutionFailure"


async def _put_with_error(error: httpx.TransportError) -> tuple[str, int]:
    """Send one Put Blob through a transport that always raises ``error``."""
    calls = 0

    def fail(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise error

    clock = EmulatedClock(speed=600)
    transport = httpx.MockTransport(fail)
    async with httpx.AsyncClient(transport=transport) as client:
        put = windows._BlobPut(
            client, "http://127.0.0.1:9/a/b?sig=x", clock, clock.now(), "device"
        )
        with pytest.raises(windows.Failure) as failure:
            await put.send_bytes(
                "", "Put Blob", "application/octet-stream", {}, b"body"
            )
    return failure.value.message, calls
