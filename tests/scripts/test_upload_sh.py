"""Tests of scripts/liveresponse/anyrun-upload.sh against a real Azurite.

Each run gets its own sandbox folder that contains TMPDIR, HOME, the fake
quarantine and the mdatp log, so the tests can check that the script leaves
nothing behind and writes the SAS signature nowhere.
"""

import base64
import datetime as dt
import hashlib
import json
import os
import socket
import subprocess
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.storage.blob import BlobSasPermissions

from .conftest import REPO, Azurite

SCRIPT = REPO / "scripts" / "liveresponse" / "anyrun-upload.sh"
STAND_IN_DIR = Path(__file__).resolve().parent  # contains the mdatp stand-in
BLOCK_SIZE = 4 * 1024 * 1024
RUN_TIMEOUT_SECONDS = 60


def make_envelope(fields: dict) -> str:
    raw = json.dumps(fields).encode()
    return "v1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def sig_values(url: str) -> list[str]:
    """Return the sig= value of `url` as sent and URL-decoded."""
    query = urllib.parse.urlsplit(url).query
    encoded = next(p[4:] for p in query.split("&") if p.startswith("sig="))
    return [encoded, urllib.parse.unquote(encoded)]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def result(self) -> dict:
        return json.loads(self.stdout)


class Sandbox:
    """Files, environment and helpers for one run of the script."""

    def __init__(self, root: Path, azurite: Azurite, host_bin: Path):
        self.root = root
        self.azurite = azurite
        self.host_bin = host_bin
        self.tmpdir = root / "tmp"
        self.home = root / "home"
        self.quarantine = root / "quarantine"
        self.mdatp_log = root / "mdatp.log"
        self.files = root / "files"
        for folder in (self.tmpdir, self.home, self.quarantine, self.files):
            folder.mkdir()
        self.blob_name = azurite.new_blob_name()
        self.url = azurite.sas_url(self.blob_name)

    def write_file(self, name: str, content: bytes) -> Path:
        path = self.files / name
        path.write_bytes(content)
        return path

    def quarantine_file(self, original: Path, content: bytes) -> None:
        stored = self.quarantine / str(original).lstrip("/")
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_bytes(content)

    def fields(self, path: Path, content: bytes, **overrides) -> dict:
        fields = {
            "path": str(path),
            "sha256": hashlib.sha256(content).hexdigest(),
            "url": self.url,
        }
        fields.update(overrides)
        return fields

    def run(
        self,
        *args: str,
        mdatp: bool = True,
        bash_options: tuple[str, ...] = (),
        extra_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Run:
        path = [str(self.host_bin)]
        if mdatp:
            path.insert(0, str(STAND_IN_DIR))
        if extra_path:
            path.insert(0, str(extra_path))
        run_env = {
            "PATH": os.pathsep.join(path),
            "HOME": str(self.home),
            "TMPDIR": str(self.tmpdir),
            "MDATP_FAKE_QUARANTINE": str(self.quarantine),
            "MDATP_FAKE_LOG": str(self.mdatp_log),
        }
        run_env.update(env or {})
        completed = subprocess.run(
            ["bash", *bash_options, str(SCRIPT), *args],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
        )
        return Run(completed.returncode, completed.stdout, completed.stderr)

    def upload(self, fields: dict, **kwargs) -> Run:
        return self.run(make_envelope(fields), **kwargs)

    def mdatp_calls(self) -> list[list[str]]:
        if not self.mdatp_log.exists():
            return []
        lines = self.mdatp_log.read_text().splitlines()
        return [line.split("\t") for line in lines]

    def exclusion_calls(self) -> list[tuple[str, str]]:
        return [
            (call[2], call[4])
            for call in self.mdatp_calls()
            if call[:2] == ["exclusion", "folder"]
        ]

    def blob_exists(self) -> bool:
        return self.azurite.blob(self.blob_name).exists()

    def blob_content(self) -> bytes:
        return self.azurite.blob(self.blob_name).download_blob().readall()

    def committed_block_sizes(self) -> list[int]:
        committed, _ = self.azurite.blob(self.blob_name).get_block_list("committed")
        return [block.size for block in committed]


@pytest.fixture
def sandbox(tmp_path: Path, azurite: Azurite, host_bin: Path) -> Sandbox:
    return Sandbox(tmp_path, azurite, host_bin)


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


# ---------------------------------------------------------------------------
# Uploads


def test_disk_small_file_uploaded(sandbox: Sandbox):
    content = random_bytes(10_000)
    path = sandbox.write_file("sample.exe", content)

    run = sandbox.upload(sandbox.fields(path, content))

    assert run.returncode == 0, run.stderr
    assert run.result == {
        "status": "uploaded",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "source": "disk",
    }
    assert sandbox.blob_content() == content


def test_disk_small_file_single_put(sandbox: Sandbox):
    content = random_bytes(10_000)
    path = sandbox.write_file("sample.exe", content)

    sandbox.upload(sandbox.fields(path, content))

    # Azurite lists no committed blocks for a blob written by Put Blob.
    assert sandbox.committed_block_sizes() == []


def test_block_size_file_single_put(sandbox: Sandbox):
    content = random_bytes(BLOCK_SIZE)
    path = sandbox.write_file("sample.bin", content)

    run = sandbox.upload(sandbox.fields(path, content))

    assert run.returncode == 0, run.stderr
    assert sandbox.committed_block_sizes() == []
    assert sandbox.blob_content() == content


def test_large_file_uploaded_as_blocks(sandbox: Sandbox):
    content = random_bytes(9 * 1024 * 1024)
    path = sandbox.write_file("large.bin", content)

    run = sandbox.upload(sandbox.fields(path, content))

    assert run.returncode == 0, run.stderr
    assert run.result["size"] == len(content)
    assert sandbox.committed_block_sizes() == [BLOCK_SIZE, BLOCK_SIZE, 1024 * 1024]
    assert sandbox.blob_content() == content


def test_large_file_blob_content_type(sandbox: Sandbox):
    content = random_bytes(BLOCK_SIZE + 1)
    path = sandbox.write_file("large.bin", content)

    sandbox.upload(sandbox.fields(path, content))

    properties = sandbox.azurite.blob(sandbox.blob_name).get_blob_properties()
    assert properties.content_settings.content_type == "application/octet-stream"


def test_empty_file_uploaded(sandbox: Sandbox):
    path = sandbox.write_file("empty", b"")

    run = sandbox.upload(sandbox.fields(path, b""))

    assert run.returncode == 0, run.stderr
    assert run.result["size"] == 0
    assert sandbox.blob_content() == b""


def test_sha1_checked_when_given(sandbox: Sandbox):
    content = random_bytes(100)
    path = sandbox.write_file("sample", content)
    sha1 = hashlib.sha1(content).hexdigest()  # noqa: S324 - Defender reports SHA-1

    run = sandbox.upload(sandbox.fields(path, content, sha1=sha1.upper()))

    assert run.returncode == 0, run.stderr


def test_optional_fields_null(sandbox: Sandbox):
    content = random_bytes(100)
    path = sandbox.write_file("sample", content)

    run = sandbox.upload(sandbox.fields(path, content, sha1=None, max_bytes=None))

    assert run.returncode == 0, run.stderr


def test_unknown_fields_ignored(sandbox: Sandbox):
    content = random_bytes(100)
    path = sandbox.write_file("sample", content)

    run = sandbox.upload(sandbox.fields(path, content, job_id="abc", retry=2))

    assert run.returncode == 0, run.stderr


def test_non_ascii_path_uploaded(sandbox: Sandbox):
    # json.dumps writes these as \u escapes, one of them a surrogate pair.
    content = random_bytes(100)
    path = sandbox.write_file('échantillon 😀 "q".bin', content)

    run = sandbox.upload(sandbox.fields(path, content))

    assert run.returncode == 0, run.stderr
    assert sandbox.blob_content() == content


def test_base64url_alphabet_decoded(sandbox: Sandbox):
    content = random_bytes(100)
    # In standard base64, "?" (0x3F) or ">" (0x3E) as the third byte of a group
    # becomes "/" or "+". Three in a row put one in that position, so the
    # envelope contains both "_" and "-".
    path = sandbox.write_file("sample ???>>>", content)
    envelope = make_envelope(sandbox.fields(path, content))

    run = sandbox.run(envelope)

    assert "-" in envelope
    assert "_" in envelope
    assert run.returncode == 0, run.stderr


def test_max_bytes_equal_size_uploaded(sandbox: Sandbox):
    content = random_bytes(100)
    path = sandbox.write_file("sample", content)

    run = sandbox.upload(sandbox.fields(path, content, max_bytes=100))

    assert run.returncode == 0, run.stderr


def test_https_url_with_userinfo_rejected(sandbox: Sandbox):
    content = b"x"
    path = sandbox.write_file("sample", content)
    url = "https://user@account.blob.core.windows.net/c/b?sv=1&sig=abc"

    run = sandbox.upload(sandbox.fields(path, content, url=url))

    assert run.result["reason"] == "bad_argument"


# ---------------------------------------------------------------------------
# Defender exclusion and quarantine


def test_disk_copy_exclusion_removed(sandbox: Sandbox):
    content = random_bytes(100)
    path = sandbox.write_file("sample", content)

    sandbox.upload(sandbox.fields(path, content))

    calls = sandbox.exclusion_calls()
    assert [action for action, _ in calls] == ["add", "remove"]
    assert calls[0][1] == calls[1][1]


def test_quarantine_restore_uploaded(sandbox: Sandbox):
    content = random_bytes(5000)
    original = sandbox.files / "gone" / "payload.elf"
    sandbox.quarantine_file(original, content)

    run = sandbox.upload(sandbox.fields(original, content))

    assert run.returncode == 0, run.stderr
    assert run.result["source"] == "quarantine"
    assert sandbox.blob_content() == content


def test_quarantine_restore_mdatp_call(sandbox: Sandbox):
    content = random_bytes(5000)
    original = sandbox.files / "gone" / "payload.elf"
    sandbox.quarantine_file(original, content)

    sandbox.upload(sandbox.fields(original, content))

    restores = [c for c in sandbox.mdatp_calls() if c[0] == "threat"]
    assert len(restores) == 1
    assert restores[0][:6] == [
        "threat",
        "quarantine",
        "restore",
        "threat-path",
        "--path",
        str(original),
    ]


def test_quarantine_exclusion_added_then_removed(sandbox: Sandbox):
    content = random_bytes(5000)
    original = sandbox.files / "gone" / "payload.elf"
    sandbox.quarantine_file(original, content)

    sandbox.upload(sandbox.fields(original, content))

    calls = sandbox.mdatp_calls()
    kinds = [" ".join(call[:3]) for call in calls]
    assert kinds == [
        "exclusion folder add",
        "threat quarantine restore",
        "exclusion folder remove",
    ]
    excluded = calls[0][4]
    assert calls[2][4] == excluded
    assert calls[1][7].startswith(excluded)
    assert not Path(excluded).exists()


def test_quarantine_hash_mismatch(sandbox: Sandbox):
    original = sandbox.files / "gone" / "payload.elf"
    sandbox.quarantine_file(original, b"other content")

    run = sandbox.upload(sandbox.fields(original, b"expected content"))

    assert run.returncode != 0
    assert run.result["reason"] == "hash_mismatch"
    assert not sandbox.blob_exists()


def test_missing_file_without_mdatp(sandbox: Sandbox):
    original = sandbox.files / "gone.bin"

    run = sandbox.upload(sandbox.fields(original, b"x"), mdatp=False)

    assert run.returncode != 0
    assert run.result["reason"] == "file_not_found"
    assert "quarantine restore is unavailable" in run.result["message"]


def test_missing_file_not_quarantined(sandbox: Sandbox):
    original = sandbox.files / "gone.bin"

    run = sandbox.upload(sandbox.fields(original, b"x"))

    assert run.returncode != 0
    assert run.result["reason"] == "restore_failed"
    assert "no quarantined threat found" in run.result["message"]


def test_restore_failure_removes_exclusion(sandbox: Sandbox):
    original = sandbox.files / "gone.bin"

    sandbox.upload(sandbox.fields(original, b"x"))

    actions = [action for action, _ in sandbox.exclusion_calls()]
    assert actions == ["add", "remove"]


def test_exclusion_add_failure_still_uploads(sandbox: Sandbox):
    content = random_bytes(100)
    path = sandbox.write_file("sample", content)

    run = sandbox.upload(
        sandbox.fields(path, content), env={"MDATP_FAKE_FAIL": "exclusion-add"}
    )

    assert run.returncode == 0, run.stderr
    assert "could not add a Defender folder exclusion" in run.stderr
    assert [a for a, _ in sandbox.exclusion_calls()] == ["add"]


def test_exclusion_remove_failure_warned(sandbox: Sandbox):
    content = random_bytes(100)
    path = sandbox.write_file("sample", content)

    run = sandbox.upload(
        sandbox.fields(path, content), env={"MDATP_FAKE_FAIL": "exclusion-remove"}
    )

    assert run.returncode == 0, run.stderr
    assert "could not remove the Defender folder exclusion" in run.stderr


# ---------------------------------------------------------------------------
# Rejected files


def test_hash_mismatch_not_uploaded(sandbox: Sandbox):
    path = sandbox.write_file("sample", b"actual content")

    run = sandbox.upload(sandbox.fields(path, b"expected content"))

    assert run.returncode != 0
    assert run.result["status"] == "failed"
    assert run.result["reason"] == "hash_mismatch"
    assert not sandbox.blob_exists()


def test_sha1_mismatch_not_uploaded(sandbox: Sandbox):
    content = b"actual content"
    path = sandbox.write_file("sample", content)

    run = sandbox.upload(sandbox.fields(path, content, sha1="0" * 40))

    assert run.result["reason"] == "hash_mismatch"
    assert not sandbox.blob_exists()


def test_over_max_bytes_not_uploaded(sandbox: Sandbox):
    content = random_bytes(101)
    path = sandbox.write_file("sample", content)

    run = sandbox.upload(sandbox.fields(path, content, max_bytes=100))

    assert run.returncode != 0
    assert run.result["reason"] == "too_large"
    assert not sandbox.blob_exists()


def test_missing_file_exit_code(sandbox: Sandbox):
    run = sandbox.upload(sandbox.fields(sandbox.files / "gone", b"x"), mdatp=False)

    assert run.returncode == 1


def test_directory_path_rejected(sandbox: Sandbox):
    run = sandbox.upload(sandbox.fields(sandbox.files, b"x"))

    assert run.result["reason"] == "file_not_found"


# ---------------------------------------------------------------------------
# Argument envelope


def _valid_fields(sandbox: Sandbox) -> dict:
    content = b"content"
    path = sandbox.write_file("sample", content)
    return sandbox.fields(path, content)


def _envelope_without(field: str) -> Callable[[Sandbox], list[str]]:
    def build(sandbox: Sandbox) -> list[str]:
        fields = _valid_fields(sandbox)
        del fields[field]
        return [make_envelope(fields)]

    return build


def _envelope_with(**overrides) -> Callable[[Sandbox], list[str]]:
    def build(sandbox: Sandbox) -> list[str]:
        return [make_envelope({**_valid_fields(sandbox), **overrides})]

    return build


def _raw_envelope(transform: Callable[[str], str]) -> Callable[[Sandbox], list[str]]:
    def build(sandbox: Sandbox) -> list[str]:
        return [transform(make_envelope(_valid_fields(sandbox)))]

    return build


def _encoded_json(text: str) -> Callable[[Sandbox], list[str]]:
    def build(sandbox: Sandbox) -> list[str]:
        _valid_fields(sandbox)
        encoded = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
        return ["v1." + encoded]

    return build


BAD_ENVELOPES = {
    "no_argument": lambda sandbox: [],
    "two_arguments": lambda sandbox: ["v1.e30", "v1.e30"],
    "wrong_version": _raw_envelope(lambda e: "v2." + e[3:]),
    "no_version": _raw_envelope(lambda e: e[3:]),
    "bad_base64": _raw_envelope(lambda e: e[:10] + "!" + e[11:]),
    "padded_base64": _raw_envelope(lambda e: e + "=="),
    "truncated_base64": _raw_envelope(lambda e: e[:-1]),
    "not_json": _encoded_json("path=/tmp/x"),
    "json_array": _encoded_json("[1, 2]"),
    "trailing_data": _encoded_json('{"path": "/x"} {}'),
    "duplicate_key": _encoded_json('{"path": "/a", "path": "/b"}'),
    "nested_value": _envelope_with(extra={"a": 1}),
    "nul_in_json": _encoded_json('{"path": "/a\u0000b"}'),
    "escaped_nul": _encoded_json('{"path": "/a\\u0000b"}'),
    "lone_surrogate": _encoded_json('{"path": "/a\\ud800"}'),
    "missing_path": _envelope_without("path"),
    "missing_sha256": _envelope_without("sha256"),
    "missing_url": _envelope_without("url"),
    "relative_path": _envelope_with(path="relative/file"),
    "path_not_string": _envelope_with(path=5),
    "short_sha256": _envelope_with(sha256="ab" * 31),
    "bad_sha1": _envelope_with(sha1="xyz"),
    "negative_max_bytes": _envelope_with(max_bytes=-1),
    "fractional_max_bytes": _envelope_with(max_bytes=1.5),
    "string_max_bytes": _envelope_with(max_bytes="100"),
    "http_remote_url": _envelope_with(
        url="http://account.blob.core.windows.net/c/b?sv=1&sig=abc"
    ),
    "ftp_url": _envelope_with(url="ftp://127.0.0.1/c/b?sig=abc"),
    "url_without_sig": _envelope_with(url="https://a.blob.core.windows.net/c/b?sv=1"),
    "url_without_blob": _envelope_with(url="https://a.blob.core.windows.net/c?sig=abc"),
    "url_with_space": _envelope_with(url="https://a.blob.core.windows.net/c/b ?sig=a"),
    "url_with_quote": _envelope_with(url='https://a.blob.core.windows.net/c/b?sig=a"'),
}


@pytest.mark.parametrize("case", BAD_ENVELOPES, ids=str)
def test_bad_envelope_rejected(sandbox: Sandbox, case: str):
    run = sandbox.run(*BAD_ENVELOPES[case](sandbox))

    assert run.returncode != 0
    assert run.result["reason"] == "bad_argument", run.result


def test_bad_envelope_no_mdatp_call(sandbox: Sandbox):
    sandbox.run(*_envelope_with(sha256="zz")(sandbox))

    assert sandbox.mdatp_calls() == []


# ---------------------------------------------------------------------------
# Upload failures


def test_expired_sas_upload_failed(sandbox: Sandbox):
    content = random_bytes(100)
    path = sandbox.write_file("sample", content)
    now = dt.datetime.now(dt.UTC)
    url = sandbox.azurite.sas_url(
        sandbox.blob_name,
        start=now - dt.timedelta(hours=2),
        expiry=now - dt.timedelta(hours=1),
    )

    run = sandbox.upload(sandbox.fields(path, content, url=url))

    assert run.returncode != 0
    assert run.result["reason"] == "upload_failed"
    assert "HTTP 403" in run.result["message"]
    assert not sandbox.blob_exists()


def test_read_only_sas_upload_failed(sandbox: Sandbox):
    content = random_bytes(100)
    path = sandbox.write_file("sample", content)
    url = sandbox.azurite.sas_url(
        sandbox.blob_name, permission=BlobSasPermissions(read=True)
    )

    run = sandbox.upload(sandbox.fields(path, content, url=url))

    assert run.returncode != 0
    assert run.result["reason"] == "upload_failed"
    assert not sandbox.blob_exists()


def test_create_only_sas_blocks_rejected(sandbox: Sandbox):
    # Azurite 3.37 requires write permission for Put Block, so a SAS for files
    # over 4 MiB needs create and write.
    content = random_bytes(BLOCK_SIZE + 1)
    path = sandbox.write_file("sample", content)
    url = sandbox.azurite.sas_url(
        sandbox.blob_name, permission=BlobSasPermissions(create=True)
    )

    run = sandbox.upload(sandbox.fields(path, content, url=url))

    assert run.result["reason"] == "upload_failed"
    assert "Put Block 1/2 returned HTTP 403" in run.result["message"]


def test_connection_refused_upload_failed(sandbox: Sandbox):
    content = random_bytes(100)
    path = sandbox.write_file("sample", content)
    # Port 9 (discard) of the loopback address, where no test starts a server.
    url = (
        f"http://127.0.0.1:9/devstoreaccount1/evidence/{sandbox.blob_name}?sv=1&sig=abc"
    )

    # curl keeps trying for as long as the budget lets it: 4 s here.
    run = sandbox.upload(
        sandbox.fields(path, content, url=url),
        env={"ANYRUN_UPLOAD_TIME_BUDGET_SECONDS": "4"},
    )

    assert run.result["reason"] == "upload_failed"
    assert "could not connect" in run.result["message"]


class LateForwarder:
    """Forwards a loopback port to Azurite, but listens only after `delay` seconds.

    Until then connections to the port are refused, as when the storage
    endpoint restarts.
    """

    def __init__(self, target_port: int, delay: float):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.target_port = target_port
        self.delay = delay
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "LateForwarder":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(10)

    def _serve(self) -> None:
        if self._stop.wait(self.delay):
            return
        with socket.create_server(("127.0.0.1", self.port)) as server:
            server.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                self.accepted += 1
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(
                        target=_pipe, args=(source, sink), daemon=True
                    ).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_refused_connection_retried_until_storage_is_back(sandbox: Sandbox):
    """The storage endpoint refuses connections for 2 s; curl tries again."""
    content = random_bytes(1000)
    path = sandbox.write_file("sample", content)
    with LateForwarder(sandbox.azurite.port, delay=2.0) as forwarder:
        url = sandbox.url.replace(
            f"127.0.0.1:{sandbox.azurite.port}", f"127.0.0.1:{forwarder.port}"
        )
        run = sandbox.upload(sandbox.fields(path, content, url=url))

    assert run.result["status"] == "uploaded", run.stdout
    assert forwarder.accepted >= 1
    assert sandbox.blob_content() == content


def test_time_budget_exhausted(sandbox: Sandbox):
    content = random_bytes(100)
    path = sandbox.write_file("sample", content)

    run = sandbox.upload(
        sandbox.fields(path, content),
        env={"ANYRUN_UPLOAD_TIME_BUDGET_SECONDS": "0"},
    )

    assert run.result["reason"] == "upload_failed"
    assert "time budget" in run.result["message"]
    assert not sandbox.blob_exists()


# ---------------------------------------------------------------------------
# No traces: output format, private folder, SAS signature


def _scenario_disk(sandbox: Sandbox) -> list[str]:
    content = random_bytes(1000)
    return [make_envelope(sandbox.fields(sandbox.write_file("s", content), content))]


def _scenario_blocks(sandbox: Sandbox) -> list[str]:
    content = random_bytes(BLOCK_SIZE + 10)
    return [make_envelope(sandbox.fields(sandbox.write_file("s", content), content))]


def _scenario_quarantine(sandbox: Sandbox) -> list[str]:
    content = random_bytes(1000)
    original = sandbox.files / "q" / "s"
    sandbox.quarantine_file(original, content)
    return [make_envelope(sandbox.fields(original, content))]


def _scenario_hash_mismatch(sandbox: Sandbox) -> list[str]:
    return [make_envelope(sandbox.fields(sandbox.write_file("s", b"a"), b"b"))]


def _scenario_restore_failed(sandbox: Sandbox) -> list[str]:
    return [make_envelope(sandbox.fields(sandbox.files / "missing", b"b"))]


def _scenario_forbidden(sandbox: Sandbox) -> list[str]:
    content = random_bytes(BLOCK_SIZE + 10)
    url = sandbox.azurite.sas_url(
        sandbox.blob_name, permission=BlobSasPermissions(read=True)
    )
    sandbox.url = url
    return [make_envelope(sandbox.fields(sandbox.write_file("s", content), content))]


def _scenario_bad_sha256(sandbox: Sandbox) -> list[str]:
    content = b"x"
    fields = sandbox.fields(sandbox.write_file("s", content), content, sha256="1")
    return [make_envelope(fields)]


def _scenario_http_remote(sandbox: Sandbox) -> list[str]:
    sig = sig_values(sandbox.url)[0]
    sandbox.url = f"http://example.invalid/a/b?sv=1&sig={sig}"
    content = b"x"
    return [make_envelope(sandbox.fields(sandbox.write_file("s", content), content))]


SCENARIOS = {
    "disk": _scenario_disk,
    "blocks": _scenario_blocks,
    "quarantine": _scenario_quarantine,
    "hash_mismatch": _scenario_hash_mismatch,
    "restore_failed": _scenario_restore_failed,
    "forbidden": _scenario_forbidden,
    "bad_sha256": _scenario_bad_sha256,
    "http_remote": _scenario_http_remote,
}


def _all_file_bytes(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_output_one_json_line(sandbox: Sandbox, scenario: str):
    run = sandbox.run(*SCENARIOS[scenario](sandbox))

    assert run.stdout.endswith("\n")
    assert run.stdout.count("\n") == 1
    assert isinstance(json.loads(run.stdout), dict)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_private_folder_removed(sandbox: Sandbox, scenario: str):
    sandbox.run(*SCENARIOS[scenario](sandbox))

    assert list(sandbox.tmpdir.iterdir()) == []
    assert list(sandbox.home.iterdir()) == []


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_sig_never_written(sandbox: Sandbox, scenario: str):
    args = SCENARIOS[scenario](sandbox)
    run = sandbox.run(*args)

    for sig in sig_values(sandbox.url):
        assert sig not in run.stdout
        assert sig not in run.stderr
        for path, content in _all_file_bytes(sandbox.root).items():
            assert sig.encode() not in content, path


@pytest.mark.parametrize("scenario", ["disk", "forbidden"])
def test_sig_absent_from_xtrace(sandbox: Sandbox, scenario: str):
    run = sandbox.run(*SCENARIOS[scenario](sandbox), bash_options=("-x",))

    for sig in sig_values(sandbox.url):
        assert sig not in run.stderr


@pytest.mark.parametrize("scenario", ["disk", "blocks"])
def test_sig_absent_from_curl_argv(sandbox: Sandbox, scenario: str):
    wrapper_dir = sandbox.root / "wrapper"
    wrapper_dir.mkdir()
    argv_log = sandbox.root / "curl-argv.log"
    real_curl = (sandbox.host_bin / "curl").resolve()
    wrapper = wrapper_dir / "curl"
    wrapper.write_text(
        f'#!/bin/bash\nprintf "%s\\n" "$*" >> "{argv_log}"\nexec "{real_curl}" "$@"\n'
    )
    wrapper.chmod(0o755)

    run = sandbox.run(*SCENARIOS[scenario](sandbox), extra_path=wrapper_dir)

    assert run.returncode == 0, run.stderr
    assert argv_log.read_text() != ""
    for sig in sig_values(sandbox.url):
        assert sig not in argv_log.read_text()


def test_failure_message_escaped(sandbox: Sandbox):
    path = sandbox.files / 'missing "quoted" \\ back\nslash\tand\x01control'

    run = sandbox.upload(sandbox.fields(path, b"x"), mdatp=False)

    assert run.stdout.count("\n") == 1
    assert str(path) in run.result["message"]
