"""Benchmark: stream a large uploaded blob to the ANY.RUN emulator, measuring memory.

Starts Azurite and the emulators on 127.0.0.1, writes a blob of --size-mb
pseudo-random bytes into the upload container, then runs the real
`submit_file_analysis` activity in a separate worker process. The worker
verifies the blob's SHA-256 while streaming it, streams it again as a
multipart upload to the emulator, and deletes it. It reports its peak RSS
above the RSS it had once imports and clients were ready.

    python -m bench.stream_file [--size-mb 200]

Results are printed and written to bench/results/stream_file.json (--output).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devhost.stack import ROOT, UPLOAD_CONTAINER, LocalStack

RESULTS = ROOT / "bench" / "results"
CHUNK = 4 * 1024 * 1024
BLOB = "inc-bench-000000000000:file-0123456789abcdef/{sha256}"


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker() -> None:
    """Run submit_file_analysis once, in this process, and print memory figures."""
    import clients
    from activities.files import submit_file_analysis
    from settings import current

    function = submit_file_analysis.build().get_user_function()
    clients.anyrun()
    clients.uploads().exists("warm-up")
    baseline_rss = _rss_mib()
    baseline_peak = _peak_mib()

    started = time.monotonic()
    answer = function(
        {
            "blob": os.environ["BENCH_BLOB"],
            "sha256": os.environ["BENCH_SHA256"],
            "file_name": "bench.bin",
            "options": current().file_options["windows"],
            "tag": "snt-bench0000001",
        }
    )
    seconds = time.monotonic() - started
    print(
        json.dumps(
            {
                "answer_status": answer["status"],
                "baseline_rss_mib": round(baseline_rss, 1),
                "baseline_peak_mib": round(baseline_peak, 1),
                "peak_rss_mib": round(_peak_mib(), 1),
                "increase_mib": round(
                    _peak_mib() - max(baseline_peak, baseline_rss), 1
                ),
                "seconds": round(seconds, 2),
            }
        )
    )


def _pieces(size: int):
    """Yield `size` deterministic pseudo-random bytes in 4 MiB pieces."""
    seed = hashlib.sha256(b"bench").digest()
    written, index = 0, 0
    while written < size:
        length = min(CHUNK, size - written)
        yield hashlib.shake_256(seed + index.to_bytes(8, "big")).digest(length)
        written += length
        index += 1


def _write_blob(stack: LocalStack, size: int) -> tuple[str, str]:
    """Stage the bytes as blocks of the upload blob; return its name and SHA-256."""
    from azure.storage.blob import BlobServiceClient

    digest = hashlib.sha256()
    for piece in _pieces(size):
        digest.update(piece)
    sha256 = digest.hexdigest()
    name = BLOB.format(sha256=sha256)

    service = BlobServiceClient.from_connection_string(
        stack.storage_connection_string, api_version="2025-11-05"
    )
    container = service.get_container_client(UPLOAD_CONTAINER)
    if not container.exists():
        container.create_container()
    blob = container.get_blob_client(name)
    block_ids = []
    for index, piece in enumerate(_pieces(size)):
        block_id = f"{index:08d}"
        blob.stage_block(block_id, piece)
        block_ids.append(block_id)
    blob.commit_block_list(block_ids)
    return name, sha256


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200, help="blob size in MiB")
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS / "stream_file.json",
        help="where to write the figures as JSON (default bench/results/)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker()
        return 0

    size = args.size_mb * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as folder:
        stack = LocalStack(Path(folder), time_scale=600)
        try:
            stack.start_azurite()
            stack.start_emulators()
            print(f"writing a {args.size_mb} MiB blob to Azurite ...", flush=True)
            name, sha256 = _write_blob(stack, size)
            env = {
                **os.environ,
                **stack.app_settings(),
                "PYTHONPATH": str(ROOT),
                "BENCH_BLOB": name,
                "BENCH_SHA256": sha256,
            }
            print(
                "streaming it to the ANY.RUN emulator from a worker process ...",
                flush=True,
            )
            output = subprocess.run(
                [sys.executable, "-m", "bench.stream_file", "--worker"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
            ).stdout
            figures = json.loads(output.strip().splitlines()[-1])
            tasks = stack.emulator_state("anyrun")["tasks"]
        finally:
            stack.stop()

    figures.update(
        size_mib=args.size_mb,
        submitted_size=tasks[0]["obj"]["size"] if tasks else None,
        submitted_sha256_matches=bool(tasks) and tasks[0]["obj"]["sha256"] == sha256,
        machine=f"{os.cpu_count()} cores",
        python=sys.version.split()[0],
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    ok = figures["answer_status"] == "submitted" and figures["increase_mib"] < 64
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
