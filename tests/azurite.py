"""Azurite for tests: a real Blob endpoint on a free 127.0.0.1 port.

The `azurite` fixture starts `azurite-blob` from node_modules once per test
session and stops it at the end.
"""

import contextlib
import datetime as dt
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

REPO = Path(__file__).resolve().parents[1]
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


@contextlib.contextmanager
def _azurite_service(binary: Path, service: str, data_dir: Path) -> Iterator[int]:
    """Run one Azurite service (`blob` or `table`) on 127.0.0.1; yield its port."""
    if not binary.exists():
        pytest.fail(f"{binary} is missing; run `make setup` first")
    log = data_dir / f"azurite-{service}.log"
    port = _free_port()
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                str(binary),
                f"--{service}Host",
                "127.0.0.1",
                f"--{service}Port",
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
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    data_dir = tmp_path_factory.mktemp("azurite")
    with _azurite_service(AZURITE_BIN, "blob", data_dir) as port:
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


AZURITE_TABLE_BIN = REPO / "node_modules" / ".bin" / "azurite-table"


@dataclass
class AzuriteTables:
    """A running Azurite table endpoint."""

    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{DEV_ACCOUNT}"


@pytest.fixture(scope="session")
def azurite_tables(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteTables]:
    """Start `azurite-table` from node_modules once per session."""
    data_dir = tmp_path_factory.mktemp("azurite-table")
    with _azurite_service(AZURITE_TABLE_BIN, "table", data_dir) as port:
        yield AzuriteTables(port=port)
