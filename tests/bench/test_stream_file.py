"""The streaming benchmark runs end to end on a small blob.

The memory target itself is measured with 200 MiB by `make bench-stream` and
recorded in docs/benchmarks.md; this test only keeps the script working.
"""

import json
import subprocess
import sys

from devhost.stack import ROOT


def test_small_blob_streams(tmp_path):
    output = tmp_path / "stream_file.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.stream_file",
            "--size-mb",
            "8",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    figures = json.loads(output.read_text())
    assert figures["answer_status"] == "submitted"
    assert figures["submitted_size"] == 8 * 1024 * 1024
    assert figures["submitted_sha256_matches"] is True
