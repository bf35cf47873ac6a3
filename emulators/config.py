"""Settings shared by the emulators and the checks that reject unsafe ones."""

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ANYRUN_API_KEY_ENV = "ANYRUN_API_KEY"
BEARER_TOKEN_ENV = "LOCAL_BEARER_TOKEN"


class ConfigError(ValueError):
    """An emulator setting is missing or invalid."""


@dataclass(frozen=True)
class EmulatorConfig:
    """Settings of one emulator process.

    ``parallel_limit`` and ``daily_quota`` are the ANY.RUN plan limits, where -1
    means unlimited. ``ti_rate_limit`` is the number of TI upload requests that one
    bearer token may send per emulated minute.

    ``defender_data_dir`` is the folder for the Defender devices' disk and
    quarantine folders and the script runs. None means a new temporary folder
    that is removed when the emulator stops, and a given folder is kept. With
    ``defender_run_any_script`` false, Linux devices run only library scripts
    whose content equals a ``scripts/liveresponse/*.sh`` file of this repository.
    """

    anyrun_api_key: str
    bearer_token: str
    speed: float = 1.0
    incidents_dir: Path | None = None
    parallel_limit: int = 5
    daily_quota: int = -1
    ti_rate_limit: int = 100
    defender_data_dir: Path | None = None
    defender_run_any_script: bool = False

    def __post_init__(self) -> None:
        if not self.anyrun_api_key:
            raise ConfigError(
                f"the ANY.RUN API key is missing: set {ANYRUN_API_KEY_ENV}"
            )
        if not self.bearer_token:
            raise ConfigError(f"the bearer token is missing: set {BEARER_TOKEN_ENV}")
        if not self.speed > 0:
            raise ConfigError(f"speed must be greater than 0, got {self.speed!r}")
        if self.parallel_limit < -1:
            raise ConfigError(
                f"parallel limit must be -1 (unlimited) or at least 0, "
                f"got {self.parallel_limit}"
            )
        if self.daily_quota < -1:
            raise ConfigError(
                f"daily quota must be -1 (unlimited) or at least 0, "
                f"got {self.daily_quota}"
            )
        if self.ti_rate_limit < 1:
            raise ConfigError(
                f"TI rate limit must be at least 1, got {self.ti_rate_limit}"
            )
        if self.incidents_dir is not None and not Path(self.incidents_dir).is_dir():
            raise ConfigError(f"incidents directory not found: {self.incidents_dir}")
        if self.defender_data_dir is not None:
            _check_data_dir(Path(self.defender_data_dir))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **settings: object
    ) -> "EmulatorConfig":
        """Build a config with secrets from ANYRUN_API_KEY and LOCAL_BEARER_TOKEN."""
        environ = os.environ if environ is None else environ
        return cls(
            anyrun_api_key=environ.get(ANYRUN_API_KEY_ENV, ""),
            bearer_token=environ.get(BEARER_TOKEN_ENV, ""),
            **settings,  # type: ignore[arg-type]
        )


def _check_data_dir(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"Defender data folder {folder} exists but is not a folder")
    if not folder.exists() and not folder.parent.is_dir():
        raise ConfigError(
            f"Defender data folder {folder} cannot be created: its parent folder "
            f"{folder.parent} does not exist"
        )


def loopback_host(host: str) -> str:
    """Return ``host`` as a loopback IP literal, or raise ConfigError.

    "localhost" becomes 127.0.0.1 so that the emulators never bind to an address
    that a resolver chose.
    """
    if host.lower() == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"host must be a loopback IP address such as 127.0.0.1, got {host!r}"
        ) from None
    if not address.is_loopback:
        raise ConfigError(
            f"host {host} is not a loopback address: the emulators listen on "
            "127.0.0.0/8 or ::1 only"
        )
    return str(address)


def is_loopback_peer(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False
