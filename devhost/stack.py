"""The local stack: Azurite, the API emulators and devhost as child processes.

Used by the demo and the end-to-end tests. Every process listens on
127.0.0.1 on a free port, gets a random key and token for this run, and is
stopped by `stop()` (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
UPLOAD_CONTAINER = "uploads"

# Azurite's documented development account (public, not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
    "K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, deadline: float, process: subprocess.Popen) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"process {process.args[0]} exited with {process.returncode}"
            )
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {LOOPBACK}:{port} after start-up")


@dataclass
class Child:
    """One started process and where its output goes."""

    name: str
    process: subprocess.Popen
    log_path: Path
    ready_line: str | None = None
    lines: list[str] = field(default_factory=list)


class LocalStack:
    """Starts and stops the local stack for one run."""

    def __init__(
        self,
        data_dir: Path,
        *,
        time_scale: float = 120.0,
        app_settings: Mapping[str, str] | None = None,
        incidents_dir: Path | None = None,
        azurite: bool = True,
        parallel_limit: int | None = None,
        anyrun_key: str | None = None,
        bearer_token: str | None = None,
        function_key: str | None = None,
        workers: int | None = None,
    ):
        self.data_dir = Path(data_dir)
        self.time_scale = time_scale
        self.extra_settings = dict(app_settings or {})
        self.incidents_dir = incidents_dir or ROOT / "samples" / "incidents"
        self.with_azurite = azurite
        self.parallel_limit = parallel_limit
        self.workers = workers
        # Random per run unless a test sets them to values it searches for.
        self.anyrun_key = anyrun_key or "ar-" + secrets.token_urlsafe(24)
        self.bearer_token = bearer_token or "bt-" + secrets.token_urlsafe(24)
        self.function_key = function_key or "fk-" + secrets.token_urlsafe(24)
        self.ports = {
            "devhost": free_port(),
            "anyrun": free_port(),
            "sentinel": free_port(),
            "defender": free_port(),
            "blob": free_port(),
            "queue": free_port(),
            "table": free_port(),
        }
        self.children: dict[str, Child] = {}

    # -- addresses ---------------------------------------------------------
    def url(self, name: str) -> str:
        return f"http://{LOOPBACK}:{self.ports[name]}"

    @property
    def storage_connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.url('blob')}/{AZURITE_ACCOUNT};"
            f"QueueEndpoint={self.url('queue')}/{AZURITE_ACCOUNT};"
            f"TableEndpoint={self.url('table')}/{AZURITE_ACCOUNT};"
        )

    def app_settings(self) -> dict[str, str]:
        """Return the app settings that point the connector at the emulators."""
        return {
            "ANYRUN_API_KEY": self.anyrun_key,
            "ANYRUN_BASE_URL": self.url("anyrun"),
            "SENTINEL_ARM_BASE_URL": self.url("sentinel"),
            "SENTINEL_TI_BASE_URL": self.url("sentinel"),
            "DEFENDER_BASE_URL": self.url("defender"),
            "UPLOAD_BLOB_ENDPOINT": f"{self.url('blob')}/{AZURITE_ACCOUNT}",
            "UPLOAD_ACCOUNT_KEY": AZURITE_KEY,
            "LOCAL_BEARER_TOKEN": self.bearer_token,
            "AzureWebJobsStorage": self.storage_connection_string,
            **self._table_settings(),
            "HTTP_TIMEOUT_SECONDS": "10",
            **self.extra_settings,
        }

    def _table_settings(self) -> dict[str, str]:
        """Point the analysis table at Azurite's table service, when it runs."""
        if not self.with_azurite:
            return {}
        return {
            "ANALYSIS_TABLE_ENDPOINT": f"{self.url('table')}/{AZURITE_ACCOUNT}",
            "ANALYSIS_TABLE_ACCOUNT_KEY": AZURITE_KEY,
        }

    # -- processes ---------------------------------------------------------
    def _spawn(
        self, name: str, args: list[str], env: Mapping[str, str], ready: str | None
    ):
        log_path = self.data_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**_base_env(), **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        child = Child(name, process, log_path, ready)
        ready_event = threading.Event()
        threading.Thread(
            target=_pump, args=(child, ready_event), daemon=True, name=f"log-{name}"
        ).start()
        self.children[name] = child
        return child, ready_event

    def _await_ready(
        self, child: Child, ready_event: threading.Event, timeout: float
    ) -> None:
        if not ready_event.wait(timeout):
            tail = "\n".join(child.lines[-20:])
            raise TimeoutError(
                f"{child.name} did not report ready in {timeout:.0f} s:\n{tail}"
            )
        if child.process.poll() is not None:
            tail = "\n".join(child.lines[-20:])
            raise RuntimeError(f"{child.name} exited during start-up:\n{tail}")

    def start_azurite(self) -> None:
        binary = ROOT / "node_modules" / ".bin" / "azurite"
        if not binary.exists():
            raise RuntimeError(
                "Azurite is not installed: run `npm ci` (make setup does)"
            )
        location = self.data_dir / "azurite"
        location.mkdir(parents=True, exist_ok=True)
        args = [
            str(binary),
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--location", str(location),
            "--blobHost", LOOPBACK, "--blobPort", str(self.ports["blob"]),
            "--queueHost", LOOPBACK, "--queuePort", str(self.ports["queue"]),
            "--tableHost", LOOPBACK, "--tablePort", str(self.ports["table"]),
        ]  # fmt: skip
        child, _ = self._spawn("azurite", args, {}, None)
        deadline = time.monotonic() + 30
        for port in ("blob", "queue", "table"):
            _wait_for_port(self.ports[port], deadline, child.process)

    def start_emulators(self) -> None:
        args = [
            sys.executable, "-m", "emulators",
            "--host", LOOPBACK,
            "--anyrun-port", str(self.ports["anyrun"]),
            "--sentinel-port", str(self.ports["sentinel"]),
            *self._defender_args(),
            "--speed", str(self.time_scale),
            "--incidents", str(self.incidents_dir),
        ]  # fmt: skip
        if self.parallel_limit is not None:
            args += ["--parallel-limit", str(self.parallel_limit)]
        env = {
            "ANYRUN_API_KEY": self.anyrun_key,
            "LOCAL_BEARER_TOKEN": self.bearer_token,
        }
        child, ready = self._spawn("emulators", args, env, "emulators ready")
        self._await_ready(child, ready, 30)

    def _defender_args(self) -> list[str]:
        from emulators.runner import EMULATORS

        if "defender" not in EMULATORS:
            return []
        # The devices' folders and script runs stay with the run's other files.
        return [
            "--defender-port", str(self.ports["defender"]),
            "--defender-data", str(self.data_dir / "defender"),
        ]  # fmt: skip

    def start_devhost(self) -> None:
        args = [
            sys.executable, "-m", "devhost",
            "--app", "function_app",
            "--host", LOOPBACK,
            "--port", str(self.ports["devhost"]),
            "--data", str(self.data_dir / "devhost"),
            "--time-scale", str(self.time_scale),
            "--blob-events", f"{UPLOAD_CONTAINER}=on_upload_blob_created",
        ]  # fmt: skip
        if self.workers is not None:
            args += ["--workers", str(self.workers)]
        env = {**self.app_settings(), "DEVHOST_FUNCTION_KEY": self.function_key}
        child, ready = self._spawn("devhost", args, env, "devhost ready")
        self._await_ready(child, ready, 60)

    def start(self) -> LocalStack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.with_azurite:
                self.start_azurite()
            self.start_emulators()
            self.start_devhost()
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, name: str) -> None:
        """SIGKILL one child (crash tests) and forget it."""
        child = self.children.pop(name)
        os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait(10)

    def restart_azurite(self, down_seconds: float = 0.0) -> None:
        """Stop Azurite with SIGTERM, wait `down_seconds`, start it on the same data.

        Its blobs, queues and tables survive, as Azure's do when a storage
        front end restarts. Calls made while it is down fail to connect.
        """
        child = self.children.pop("azurite")
        if child.process.poll() is None:
            os.killpg(child.process.pid, signal.SIGTERM)
            try:
                child.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait(5)
        time.sleep(down_seconds)
        self.start_azurite()

    def stop(self) -> None:
        for name in reversed(list(self.children)):
            child = self.children.pop(name)
            if child.process.poll() is None:
                try:
                    os.killpg(child.process.pid, signal.SIGTERM)
                    child.process.wait(10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(child.process.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    child.process.wait(5)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- calls -------------------------------------------------------------
    def post_incident(
        self, body: Any, *, key: str | None = None, **kwargs
    ) -> httpx.Response:
        headers = {"x-functions-key": self.function_key if key is None else key}
        if "content" not in kwargs:
            kwargs["json"] = body
        return httpx.post(
            f"{self.url('devhost')}/api/incidents",
            headers=headers,
            timeout=30,
            **kwargs,
        )

    def incident_status(self, instance_id: str) -> httpx.Response:
        return httpx.get(
            f"{self.url('devhost')}/api/incidents/{instance_id}",
            headers={"x-functions-key": self.function_key},
            timeout=30,
        )

    def wait_for(self, instance_id: str, timeout: float = 120) -> dict[str, Any]:
        """Poll the status API until the instance ends; return the last status."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.incident_status(instance_id).json()
            if body.get("runtimeStatus") in ("Completed", "Failed", "Terminated"):
                return body
            if time.monotonic() > deadline:
                raise TimeoutError(f"{instance_id} still {body.get('runtimeStatus')}")
            time.sleep(0.2)

    def emulator_state(self, name: str) -> dict[str, Any]:
        return httpx.get(f"{self.url(name)}/_emulator/state", timeout=10).json()

    def emulator_requests(self, name: str) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url(name)}/_emulator/requests", timeout=10).json()

    def upload_blobs(self) -> list[str]:
        """Return the names of the blobs in Azurite's upload container."""
        from clients.storage import UploadStore

        store = UploadStore(
            f"{self.url('blob')}/{AZURITE_ACCOUNT}",
            UPLOAD_CONTAINER,
            credential=None,
            account_key=AZURITE_KEY,
        )
        return store.list_names()

    def logs(self) -> str:
        return "\n".join("\n".join(child.lines) for child in self.children.values())


def _base_env() -> dict[str, str]:
    """Build the child environment: the parent's, minus identity and proxy variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "MSI_", "IDENTITY_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    for proxy in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
    ):
        env.pop(proxy, None)
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def _pump(child: Child, ready: threading.Event) -> None:
    """Copy a child's output to its log file and watch for its ready line."""
    with child.log_path.open("a", encoding="utf-8") as log:
        for line in child.process.stdout:
            line = line.rstrip("\n")
            child.lines.append(line)
            log.write(line + "\n")
            log.flush()
            if child.ready_line and line.startswith(child.ready_line):
                ready.set()
    ready.set()


def load_samples(
    directory: Path | None = None, pattern: str = "*.json"
) -> list[tuple[str, Any]]:
    """Return (file name, trigger body) of each sample incident matching `pattern`."""
    directory = directory or ROOT / "samples" / "incidents"
    return [
        (path.name, json.loads(path.read_text()))
        for path in sorted(directory.glob(pattern))
    ]
