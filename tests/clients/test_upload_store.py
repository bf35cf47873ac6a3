"""Upload store against a real Azurite, and file submission to the ANY.RUN emulator."""

import hashlib
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from clients.anyrun import AnyRunClient, ChunkReader
from clients.storage import UploadStore
from emulators import EmulatorConfig, start_in_thread
from tests.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY

CONTAINER = "uploads-test"
KEY = "anyrun-key-for-upload-tests"


@pytest.fixture
def store(azurite):
    return UploadStore(
        f"http://127.0.0.1:{azurite.port}/{DEV_ACCOUNT}",
        CONTAINER,
        credential=None,
        account_key=DEV_ACCOUNT_KEY,
    )


@pytest.fixture(scope="module")
def sandbox():
    config = EmulatorConfig(
        anyrun_api_key=KEY, bearer_token="t-upload-tests", speed=600
    )
    with start_in_thread(config) as thread:
        yield thread.urls["anyrun"]


def put(url, body):
    return httpx.put(
        url, content=body, headers={"x-ms-blob-type": "BlockBlob"}, timeout=10
    )


def expiry(minutes=10):
    return datetime.now(UTC) + timedelta(minutes=minutes)


def test_sas_url_accepts_upload(store):
    url = store.upload_url("inc-a:file-1/abc", expiry())
    assert put(url, b"hello").status_code == 201
    assert store.exists("inc-a:file-1/abc")
    assert store.size("inc-a:file-1/abc") == 5


def test_sas_url_cannot_read(store):
    url = store.upload_url("inc-a:file-2/abc", expiry())
    put(url, b"secret")
    assert httpx.get(url, timeout=10).status_code == 403


def test_sas_url_is_per_blob(store):
    url = store.upload_url("inc-a:file-3/abc", expiry())
    other = url.replace("file-3", "file-4")
    assert put(other, b"x").status_code == 403


def test_expired_sas_rejected(store):
    url = store.upload_url("inc-a:file-5/abc", datetime.now(UTC) - timedelta(minutes=1))
    assert put(url, b"x").status_code == 403


def test_chunks_stream_and_delete(store):
    body = bytes(range(256)) * 40_000
    put(store.upload_url("inc-a:file-6/abc", expiry()), body)
    assert b"".join(store.chunks("inc-a:file-6/abc")) == body
    assert store.delete("inc-a:file-6/abc") is True
    assert store.exists("inc-a:file-6/abc") is False
    assert store.delete("inc-a:file-6/abc") is False


def test_file_submission_streams_blob(store, sandbox):
    body = b"MZ" + bytes(1_000_000)
    put(store.upload_url("inc-a:file-7/abc", expiry()), body)
    client = AnyRunClient(sandbox, KEY, connector_id="test")
    task = client.submit_file(
        lambda: ChunkReader(store.chunks("inc-a:file-7/abc")),
        "sample.exe",
        {
            "env_os": "windows",
            "env_version": "10",
            "env_bitness": 64,
            "opt_timeout": 60,
            "opt_network_connect": True,
        },
        "snt-test000001",
    )
    state = httpx.get(f"{sandbox}/_emulator/state", timeout=10).json()
    submitted = [t for t in state["tasks"] if t["uuid"] == task][0]
    assert submitted["obj"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert submitted["obj"]["size"] == len(body)
    assert submitted["tags"] == ["snt-test000001"]


def test_chunk_reader_reads_across_chunks():
    reader = ChunkReader([b"ab", b"", b"cde"])
    pieces = list(iter(lambda: reader.read(4), b""))
    assert b"".join(pieces) == b"abcde"
    assert all(len(piece) <= 4 for piece in pieces)
    assert reader.read() == b""
