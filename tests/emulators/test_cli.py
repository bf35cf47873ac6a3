"""`python -m emulators`: the ready line, SIGTERM and the rejected settings."""

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.emulators.conftest import API_KEY, BEARER_TOKEN

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(
    r"^emulators ready anyrun=(http://127\.0\.0\.1:\d+) "
    r"sentinel=(http://127\.0\.0\.1:\d+) defender=(http://127\.0\.0\.1:\d+)$"
)


def emulator_env(**overrides: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"ANYRUN_API_KEY": API_KEY, "LOCAL_BEARER_TOKEN": BEARER_TOKEN})
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emulators", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )


def test_cli_ready_and_sigterm(incidents_dir: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulators",
            "--host",
            "127.0.0.1",
            "--anyrun-port",
            "0",
            "--sentinel-port",
            "0",
            "--speed",
            "120",
            "--incidents",
            str(incidents_dir),
        ],
        cwd=ROOT,
        env=emulator_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        match = READY.match(line)
        assert match, line
        anyrun_url, sentinel_url, defender_url = match.groups()
        health = httpx.get(f"{anyrun_url}/_emulator/health", trust_env=False).json()
        user = httpx.get(
            f"{anyrun_url}/v1/user",
            headers={"Authorization": f"API-Key {API_KEY}"},
            trust_env=False,
        )
        state = httpx.get(f"{sentinel_url}/_emulator/state", trust_env=False).json()
        machine = httpx.get(
            f"{defender_url}/api/machines/00000000000000000000000000000000deadbeef",
            headers={"Authorization": f"Bearer {BEARER_TOKEN}"},
            trust_env=False,
        )
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    assert health["emulator"] == "anyrun"
    assert health["speed"] == 120.0
    assert health["now"].endswith("Z")
    assert user.status_code == 200
    assert len(state["incidents"]) == 2
    assert machine.json()["computerDnsName"] == "lx-0042"
    assert code == 0


def test_cli_fixed_ports() -> None:
    ports = []
    for _ in range(3):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulators",
            "--anyrun-port",
            str(ports[0]),
            "--sentinel-port",
            str(ports[1]),
            "--defender-port",
            str(ports[2]),
        ],
        cwd=ROOT,
        env=emulator_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    assert line == (
        f"emulators ready anyrun=http://127.0.0.1:{ports[0]} "
        f"sentinel=http://127.0.0.1:{ports[1]} defender=http://127.0.0.1:{ports[2]}"
    )
    assert code == 0


@pytest.mark.parametrize("variable", ["ANYRUN_API_KEY", "LOCAL_BEARER_TOKEN"])
def test_cli_missing_secret(variable: str) -> None:
    result = run_cli(env=emulator_env(**{variable: None}))
    assert result.returncode == 2
    assert variable in result.stderr
    assert result.stdout == ""


# The hosts are only parsed and rejected; nothing binds to or contacts them.
@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "example.com"])  # noqa: S104
def test_cli_non_loopback_host(host: str) -> None:
    result = run_cli("--host", host, env=emulator_env())
    assert result.returncode == 2
    assert "loopback" in result.stderr
    assert result.stdout == ""


def test_cli_missing_incidents_dir(tmp_path: Path) -> None:
    result = run_cli("--incidents", str(tmp_path / "none"), env=emulator_env())
    assert result.returncode == 2
    assert "incidents directory not found" in result.stderr


def test_cli_bad_speed() -> None:
    result = run_cli("--speed", "0", env=emulator_env())
    assert result.returncode == 2
    assert "speed" in result.stderr


def test_cli_defender_data(tmp_path: Path) -> None:
    folder = tmp_path / "defender"
    process = subprocess.Popen(
        [sys.executable, "-m", "emulators", "--defender-data", str(folder)],
        cwd=ROOT,
        env=emulator_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    assert READY.match(line), line
    assert code == 0
    assert len(list((folder / "devices").iterdir())) == 5


def test_cli_bad_defender_data(tmp_path: Path) -> None:
    result = run_cli(
        "--defender-data", str(tmp_path / "missing" / "data"), env=emulator_env()
    )
    assert result.returncode == 2
    assert "Defender data folder" in result.stderr
