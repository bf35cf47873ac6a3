"""The in-process API: start_emulators, start_in_thread, config and clock."""

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from emulators import (
    ConfigError,
    EmulatedClock,
    EmulatorConfig,
    start_emulators,
    start_in_thread,
)
from emulators.config import loopback_host
from tests.emulators.conftest import API_KEY, BEARER_TOKEN

pytestmark = pytest.mark.timeout(30)


def config(**settings: object) -> EmulatorConfig:
    return EmulatorConfig(anyrun_api_key=API_KEY, bearer_token=BEARER_TOKEN, **settings)


def test_thread_start_stop() -> None:
    thread = start_in_thread(config(speed=60))
    try:
        urls = thread.urls
        health = httpx.get(f"{urls['sentinel']}/_emulator/health", trust_env=False)
    finally:
        thread.stop()
    assert set(urls) == {"anyrun", "sentinel", "defender"}
    assert health.json()["emulator"] == "sentinel"
    assert health.json()["speed"] == 60.0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{urls['anyrun']}/_emulator/health", trust_env=False)


def test_thread_context_manager() -> None:
    with start_in_thread(config()) as thread:
        response = httpx.get(
            f"{thread.urls['anyrun']}/v1/user",
            headers={"Authorization": f"API-Key {API_KEY}"},
            trust_env=False,
        )
    assert response.status_code == 200


def test_thread_start_error() -> None:
    with pytest.raises(ConfigError):
        start_in_thread(config(), host="198.51.100.1")


async def test_start_on_loop() -> None:
    running = await start_emulators(config())
    try:
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.get(f"{running.anyrun_url}/_emulator/health")
    finally:
        await running.stop()
    assert response.json()["emulator"] == "anyrun"
    assert running.anyrun_url.startswith("http://127.0.0.1:")
    assert running.sentinel_url.startswith("http://127.0.0.1:")
    assert running.defender_url.startswith("http://127.0.0.1:")


async def test_start_busy_port() -> None:
    first = await start_emulators(config())
    try:
        port = int(first.anyrun_url.rsplit(":", 1)[1])
        with pytest.raises(ConfigError, match=str(port)):
            await start_emulators(config(), ports={"anyrun": port})
    finally:
        await first.stop()


async def test_start_unknown_name() -> None:
    with pytest.raises(ConfigError, match="virustotal"):
        await start_emulators(config(), ports={"virustotal": 0})


async def test_start_ipv6_loopback() -> None:
    try:
        running = await start_emulators(config(), host="::1")
    except ConfigError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.get(f"{running.anyrun_url}/_emulator/health")
    finally:
        await running.stop()
    assert running.anyrun_url.startswith("http://[::1]:")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"anyrun_api_key": ""}, "ANYRUN_API_KEY"),
        ({"bearer_token": ""}, "LOCAL_BEARER_TOKEN"),
        ({"speed": 0}, "speed"),
        ({"parallel_limit": -2}, "parallel"),
        ({"daily_quota": -5}, "quota"),
        ({"ti_rate_limit": 0}, "rate"),
    ],
)
def test_config_rejected(settings: dict[str, object], message: str) -> None:
    values: dict[str, object] = {
        "anyrun_api_key": API_KEY,
        "bearer_token": BEARER_TOKEN,
        **settings,
    }
    with pytest.raises(ConfigError, match=message):
        EmulatorConfig(**values)  # type: ignore[arg-type]


def test_config_defender_data_dir(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        config(defender_data_dir=a_file)
    with pytest.raises(ConfigError, match="parent folder"):
        config(defender_data_dir=tmp_path / "missing" / "data")
    assert config(defender_data_dir=tmp_path / "new").defender_data_dir is not None


async def test_defender_data_dir_kept(tmp_path: Path) -> None:
    folder = tmp_path / "defender"
    running = await start_emulators(config(defender_data_dir=folder))
    devices = sorted(path.name for path in (folder / "devices").iterdir())
    await running.stop()
    assert len(devices) == 5
    assert (folder / "devices" / devices[0] / "disk").is_dir()
    assert folder.is_dir()


async def test_defender_temp_dir_removed() -> None:
    running = await start_emulators(config())
    data_dir = running.defender.data_dir
    existed = data_dir.is_dir()
    await running.stop()
    assert existed
    assert not data_dir.exists()


def test_config_from_env() -> None:
    environ = {"ANYRUN_API_KEY": "k", "LOCAL_BEARER_TOKEN": "t"}
    loaded = EmulatorConfig.from_env(environ, speed=5)
    assert loaded.anyrun_api_key == "k"
    assert loaded.bearer_token == "t"
    assert loaded.speed == 5
    with pytest.raises(ConfigError, match="ANYRUN_API_KEY"):
        EmulatorConfig.from_env({})


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("localhost", "127.0.0.1"),
        ("127.1.2.3", "127.1.2.3"),
    ],
)
def test_loopback_accepted(host: str, expected: str) -> None:
    assert loopback_host(host) == expected


# The hosts are only parsed and rejected; nothing binds to or contacts them.
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "203.0.113.7"])  # noqa: S104
def test_loopback_rejected(host: str) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        loopback_host(host)


async def test_clock_speed() -> None:
    clock = EmulatedClock(1200)
    began = time.monotonic()
    await clock.sleep(120)
    wall = time.monotonic() - began
    assert 0.09 <= wall <= 0.5
    assert clock.now() >= 120
    assert clock.wall_seconds(120) == pytest.approx(0.1)


async def test_clock_utc_advances() -> None:
    clock = EmulatedClock(3600)
    start = clock.utc()
    await asyncio.sleep(0.05)
    assert (clock.utc() - start).total_seconds() >= 170
