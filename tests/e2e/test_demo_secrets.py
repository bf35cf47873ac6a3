"""End to end: the whole demo with known secret values, then a search for them.

The demo runs as `make demo` runs it, but on a stack whose ANY.RUN key, bearer
token and function key are marker values. Then the scan searches for the
markers, the storage account key, SAS signatures and bearer headers in:

- every file the run wrote: the children's logs, devhost's database with each
  input and output, the Defender devices' folders and script runs;
- the demo's printout and every enrichment's status;
- the emulators' state and request logs.
"""

import functools
import json

import httpx
import pytest

from bench.soak import MARKERS, scan_for_secrets
from devhost import demo
from devhost.stack import LocalStack

pytestmark = pytest.mark.e2e


class RecordingStack(LocalStack):
    """A LocalStack that keeps the emulators' state from before it stops."""

    captured: dict[str, str] = {}

    def stop(self) -> None:
        if "emulators" in self.children:
            for name in ("anyrun", "sentinel", "defender"):
                state = self.emulator_state(name)
                requests = self.emulator_requests(name)
                RecordingStack.captured[f"{name} state"] = json.dumps(state)
                RecordingStack.captured[f"{name} requests"] = json.dumps(requests)
        if "devhost" in self.children:
            listing = httpx.get(
                f"{self.url('devhost')}/api/incidents",
                params={"top": 500},
                headers={"x-functions-key": self.function_key},
                timeout=30,
            ).json()
            RecordingStack.captured["listing"] = json.dumps(listing)
            for item in listing["incidents"]:
                status = self.incident_status(item["instanceId"]).text
                RecordingStack.captured[f"status {item['instanceId']}"] = status
        super().stop()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo-secrets") / "demo"
    factory = functools.partial(RecordingStack, **MARKERS)
    RecordingStack.captured = {}
    return folder, factory


def test_demo_leaks_no_secret(demo_run, capsys):
    folder, factory = demo_run
    assert demo.main(["--data", str(folder)], stack_factory=factory) == 0
    printed = capsys.readouterr().out
    assert "Blobs left in the upload container: 0" in printed

    captured = RecordingStack.captured
    sentinel = json.loads(captured["sentinel state"])
    comments = [c for i in sentinel["incidents"] for c in i["comments"]]
    assert len(comments) >= 7, "every sample incident gets its comment"
    defender = json.loads(captured["defender state"])
    assert any(alert["comments"] for alert in defender["alerts"])

    statuses = [key for key in captured if key.startswith("status ")]
    assert len(statuses) == 7, "one status per sample incident"
    scan = scan_for_secrets(folder, MARKERS, {"demo output": printed, **captured})
    # The scan read the logs, the database and the script runs.
    assert scan["scanned"] > 10
    assert (folder / "logs" / "devhost.log").stat().st_size > 0
    assert scan["findings"] == []


def test_scan_finds_planted_secrets(tmp_path):
    """The scan finds each kind of secret, also inside a script argument."""
    import base64

    sas = "https://127.0.0.1/uploads/x?sv=2024-05-04&sp=cw&sig=AbCdEfGhIjKlMnOpQrSt%3D"
    argument = base64.urlsafe_b64encode(json.dumps({"u": sas}).encode()).decode()
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").write_text(f"key {MARKERS['anyrun_key']}\n")
    (tmp_path / "run.txt").write_text(f"RunScript -Args v1.{argument.rstrip('=')}\n")
    (tmp_path / "azurite").mkdir()
    (tmp_path / "azurite" / "blob").write_text(MARKERS["function_key"])
    scan = scan_for_secrets(
        tmp_path,
        MARKERS,
        {"status": "Authorization: Bearer abcdefghijklmnopqrstuvwxyz"},
    )
    assert sorted(scan["findings"]) == [
        "SAS signature in run.txt",
        "anyrun_key in logs/a.log",
        "bearer header in status",
    ]
