"""`python -m devhost` as a subprocess: readiness, function keys, and recovery
after SIGKILL while an activity runs and while a timer is armed."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = Path(__file__).resolve().parent / "devhost_testapp"
KEY = "process-test-key"
pytestmark = pytest.mark.timeout(60)


class DevHostProcess:
    """One `python -m devhost` child on a free loopback port."""

    def __init__(self, data_dir: Path, log_path: Path, time_scale: float = 30) -> None:
        self.log_path = log_path
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DEVHOST_FUNCTION_KEY": KEY,
        }
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devhost",
                "--app",
                "function_app",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--data",
                str(data_dir),
                "--time-scale",
                str(time_scale),
                "--workers",
                "2",
            ],
            cwd=APP_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self.base_url = self._read_ready_line(timeout=20)

    def _read_ready_line(self, timeout: float) -> str:
        lines: queue.Queue[bytes] = queue.Queue()
        reader = threading.Thread(
            target=lambda: lines.put(self.process.stdout.readline()), daemon=True
        )
        reader.start()
        try:
            line = lines.get(timeout=timeout).decode().strip()
        except queue.Empty:
            self.kill()
            raise TimeoutError("devhost printed no ready line") from None
        if not line.startswith("devhost ready "):
            self.kill()
            raise RuntimeError(f"unexpected first line from devhost: {line!r}")
        return line.removeprefix("devhost ready ")

    def status(self, instance_id: str) -> dict:
        url = f"{self.base_url}/runtime/webhooks/durabletask/instances/{instance_id}"
        response = httpx.get(url, params={"showHistory": "true"}, timeout=5)
        return response.json()

    def wait_for(self, instance_id: str, condition, timeout: float = 15) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(instance_id)
            if condition(status):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met: {json.dumps(status)[:500]}")
            time.sleep(0.02)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._log.close()

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(15)
        self._log.close()
        return code


@pytest.fixture
def processes(tmp_path):
    started: list[DevHostProcess] = []

    def start() -> DevHostProcess:
        process = DevHostProcess(tmp_path / "data", tmp_path / "devhost.log")
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process.poll() is None:
            process.kill()


def event_types(status: dict) -> list[str]:
    return [event["EventType"] for event in status.get("historyEvents", [])]


def test_process_key_and_sigkill_recovery(processes):
    devhost = processes()
    start_url = f"{devhost.base_url}/api/orchestrators/slow"
    unauthorized = httpx.post(start_url, json=0.4, timeout=5)
    assert unauthorized.status_code == 401

    started = httpx.post(start_url, json=0.5, params={"code": KEY}, timeout=5)
    assert started.status_code == 202
    instance_id = started.json()["id"]

    # Kill while the first activity is still sleeping.
    devhost.wait_for(instance_id, lambda s: s["runtimeStatus"] == "Running")
    devhost.kill()

    devhost = processes()
    # Kill again while the durable timer (30 s at scale 30) is armed.
    devhost.wait_for(instance_id, lambda s: "TimerCreated" in event_types(s))
    devhost.kill()

    devhost = processes()
    status = devhost.wait_for(instance_id, lambda s: s["runtimeStatus"] == "Completed")
    types = event_types(status)
    log_text = devhost.log_path.read_text()
    assert status["output"] == "slow done"
    assert types.count("ExecutionStarted") == 1
    assert types.count("TaskCompleted") == 2
    assert types.count("TimerFired") == 1
    # The first activity was in flight at the first kill, so it ran twice.
    assert log_text.count("activity.started instance") == 3
    assert devhost.terminate() == 0


def test_process_rejects_public_host(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "devhost", "--host", "0.0.0.0", "--data", str(tmp_path)],  # noqa: S104
        cwd=APP_DIR,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert b"loopback" in result.stderr


def test_process_rejects_unknown_blob_function(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devhost",
            "--port",
            "0",
            "--data",
            str(tmp_path),
            "--blob-events",
            "uploads=not_a_function",
        ],
        cwd=APP_DIR,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DEVHOST_FUNCTION_KEY": KEY},
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert b"not an eventGridTrigger function" in result.stderr
