"""Fixtures for the Live Response script tests: Azurite and a host-like PATH."""

import datetime as dt
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.storage.blob import (
    BlobClient,
    BlobSasPermissions,
    BlobServiceClient,
    generate_blob_sas,
)

REPO = Path(__file__).resolve().parents[2]
AZURITE_BIN = REPO / "node_modules" / ".bin" / "azurite-blob"

# The documented, public key of Azurite's built-in development account.
DEV_ACCOUNT = "devstoreaccount1"
DEV_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
    "K1SZFPTOtr/KBHBeksoGMGw=="
)
CONTAINER = "evidence"
# The SDK's default API version is newer than Azurite 3.37 accepts.
SDK_API_VERSION = "2025-11-05"
STARTUP_TIMEOUT_SECONDS = 30

# Programs that a Defender Linux host cannot be relied on to have. The scripts
# run with a PATH from which these are missing.
HOST_MISSING_PROGRAMS = ("jq", "python", "perl", "node", "nodejs", "openssl", "pwsh")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"Azurite exited with {process.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(
        f"Azurite did not listen on 127.0.0.1:{port} within {STARTUP_TIMEOUT_SECONDS} s"
    )


@dataclass
class Azurite:
    """A running Azurite blob endpoint with one container for the tests."""

    port: int
    service: BlobServiceClient

    def new_blob_name(self) -> str:
        return f"{uuid.uuid4().hex}.bin"

    def blob(self, name: str) -> BlobClient:
        return self.service.get_blob_client(CONTAINER, name)

    def sas_url(
        self,
        name: str,
        permission: BlobSasPermissions | None = None,
        expiry: dt.datetime | None = None,
        start: dt.datetime | None = None,
    ) -> str:
        """Return a path-style SAS URL for blob `name`, create+write by default."""
        now = dt.datetime.now(dt.UTC)
        token = generate_blob_sas(
            DEV_ACCOUNT,
            CONTAINER,
            name,
            account_key=DEV_ACCOUNT_KEY,
            permission=permission or BlobSasPermissions(create=True, write=True),
            expiry=expiry or now + dt.timedelta(minutes=30),
            start=start,
        )
        return f"http://127.0.0.1:{self.port}/{DEV_ACCOUNT}/{CONTAINER}/{name}?{token}"


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    if not AZURITE_BIN.exists():
        pytest.fail(f"{AZURITE_BIN} is missing; run `make setup` first")
    data_dir = tmp_path_factory.mktemp("azurite")
    log = data_dir / "azurite.log"
    port = _free_port()
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                str(AZURITE_BIN),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(port),
                "--location",
                str(data_dir),
                "--silent",
                "--disableTelemetry",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port, process, log)
        connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};"
            f"AccountKey={DEV_ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};"
        )
        service = BlobServiceClient.from_connection_string(
            connection_string, api_version=SDK_API_VERSION
        )
        service.create_container(CONTAINER)
        yield Azurite(port=port, service=service)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def host_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a folder of links to every program on PATH except HOST_MISSING_PROGRAMS.

    Used as the whole PATH of a script run, so a test fails if the script needs
    jq, python or another program that Defender's Linux hosts may lack.
    """
    folder = tmp_path_factory.mktemp("host-bin")
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not Path(directory).is_dir():
            continue
        for entry in Path(directory).iterdir():
            name = entry.name
            if name.startswith(HOST_MISSING_PROGRAMS) or (folder / name).exists():
                continue
            if entry.is_file() and os.access(entry, os.X_OK):
                (folder / name).symlink_to(entry.resolve())
    for required in ("bash", "curl", "sha256sum"):
        assert (folder / required).exists(), f"{required} is not installed"
    assert shutil.which("jq", path=str(folder)) is None
    return folder
