"""Connector configuration: every app setting, read and validated once.

Settings are environment variables (app settings in Azure). `SETTINGS` is the
registry the deployment template tests check against, and `load()` builds the
typed `Settings` object, raising `SettingsError` with the variable's name and
the fix when a value is missing or invalid.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit


class SettingsError(ValueError):
    """An app setting is missing or invalid; the message names it."""


@dataclass(frozen=True)
class Setting:
    """One app setting: its name, default (None = required) and meaning."""

    name: str
    default: str | None
    description: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "ANYRUN_API_KEY",
        None,
        "ANY.RUN API key (Key Vault secret ANYRUN-APIKey).",
        secret=True,
    ),
    Setting(
        "ANYRUN_BASE_URL",
        "https://api.any.run",
        "ANY.RUN API root; /v1 and /report paths hang below it.",
    ),
    Setting(
        "ANYRUN_CONNECTOR_ID",
        "MS_Sentinel_Durable:0.1.0",
        "Value of the x-anyrun-connector header.",
    ),
    Setting(
        "SENTINEL_ARM_BASE_URL",
        "https://management.azure.com",
        "Azure Resource Manager endpoint for incidents.",
    ),
    Setting(
        "SENTINEL_API_VERSION",
        "2025-09-01",
        "Microsoft.SecurityInsights api-version for incidents and comments.",
    ),
    Setting(
        "SENTINEL_TI_BASE_URL",
        "https://api.ti.sentinel.azure.com",
        "Sentinel threat intelligence upload endpoint.",
    ),
    Setting(
        "SENTINEL_TI_API_VERSION",
        "2024-02-01-preview",
        "api-version of the STIX objects upload API.",
    ),
    Setting(
        "ARM_TOKEN_SCOPE",
        "https://management.azure.com/.default",
        "Token scope for ARM and the TI upload API.",
    ),
    Setting(
        "LOCAL_BEARER_TOKEN",
        "",
        "Static bearer token for loopback emulators only; never set in Azure.",
        secret=True,
    ),
    Setting(
        "AZURE_CLIENT_ID",
        "",
        "Client id of a user-assigned managed identity; empty means system-assigned.",
    ),
    Setting(
        "HTTP_TIMEOUT_SECONDS",
        "30",
        "Read timeout of every outbound HTTP call, in seconds.",
    ),
    Setting(
        "HTTP_MAX_ATTEMPTS",
        "5",
        "Attempts per HTTP call for 429, 5xx and transport errors.",
    ),
    Setting(
        "HTTP_MAX_RETRY_WAIT_SECONDS",
        "60",
        "Longest single wait between attempts, in seconds (caps Retry-After).",
    ),
    Setting("URL_ENV_OS", "windows", "ANY.RUN env_os for URL analyses."),
    Setting("URL_ENV_VERSION", "10", "ANY.RUN env_version for URL analyses."),
    Setting("URL_ENV_BITNESS", "64", "ANY.RUN env_bitness for URL analyses."),
    Setting("URL_ENV_TYPE", "complete", "ANY.RUN env_type for URL analyses."),
    Setting(
        "URL_BROWSER", "Microsoft Edge", "ANY.RUN obj_ext_browser for URL analyses."
    ),
    Setting(
        "URL_OPT_TIMEOUT",
        "120",
        "ANY.RUN opt_timeout for URL analyses, seconds (10-660).",
    ),
    Setting("ENV_LOCALE", "en-US", "ANY.RUN env_locale for every analysis."),
    Setting(
        "OPT_PRIVACY_TYPE",
        "bylink",
        "ANY.RUN opt_privacy_type: public, bylink, owner or byteam.",
    ),
    Setting("OPT_NETWORK_CONNECT", "true", "ANY.RUN opt_network_connect."),
    Setting("OPT_NETWORK_FAKENET", "false", "ANY.RUN opt_network_fakenet."),
    Setting("OPT_NETWORK_TOR", "false", "ANY.RUN opt_network_tor."),
    Setting("OPT_NETWORK_MITM", "false", "ANY.RUN opt_network_mitm."),
    Setting(
        "OPT_NETWORK_GEO",
        "fastest",
        "ANY.RUN opt_network_geo: fastest or a country code.",
    ),
    Setting(
        "OPT_AUTOMATED_INTERACTIVITY", "true", "ANY.RUN opt_automated_interactivity."
    ),
    Setting(
        "ANALYSIS_DEADLINE_MARGIN_SECONDS",
        "600",
        "Wait beyond opt_timeout before an analysis is reported as timed out.",
    ),
    Setting(
        "STATUS_CHECK_MIN_SECONDS",
        "5",
        "Shortest durable wait between two status checks of one analysis.",
    ),
    Setting(
        "STATUS_WAIT_POLICY",
        "remaining",
        "How status checks are scheduled: remaining (from the seconds the sandbox "
        "reports), fixed (130 s, then every 60 s) or poll (every 10 s); the last "
        "two are baselines for benchmarks.",
    ),
    Setting(
        "REUSE_WINDOW_HOURS",
        "24",
        "Hours an analysis of the same URL or file is reused instead of submitted "
        "again; 0 submits every object of every incident.",
    ),
    Setting(
        "SANDBOX_MAX_PARALLEL",
        "0",
        "Most sandbox tasks the connector runs at once; 0 means the account's "
        "parallels from GET /v1/user.",
    ),
    Setting(
        "ANALYSIS_TABLE_ENDPOINT",
        "",
        "Table endpoint of the storage account that keeps analysis records and "
        "sandbox slots; without it there is no reuse and no slot limit.",
    ),
    Setting(
        "ANALYSIS_TABLE_ACCOUNT_KEY",
        "",
        "Account key for the analysis table; only for a loopback Azurite endpoint.",
        secret=True,
    ),
    Setting(
        "ANALYSIS_TABLE_NAME",
        "anyrunanalyses",
        "Name of the table of analysis records and sandbox slots.",
    ),
    Setting(
        "MAX_OBJECTS_PER_INCIDENT",
        "20",
        "URLs and files analysed per incident; the rest are reported as skipped.",
    ),
    Setting(
        "LABEL_PREFIX", "ANY.RUN", "Prefix of the incident labels the connector writes."
    ),
    Setting(
        "INDICATOR_REPUTATIONS",
        "malicious,suspicious",
        "IOC reputations uploaded as indicators: malicious, suspicious.",
    ),
    Setting("INDICATOR_VALID_DAYS", "30", "Days an uploaded indicator stays valid."),
    Setting(
        "TI_SOURCE_SYSTEM", "ANY.RUN Sandbox", "sourcesystem of uploaded STIX objects."
    ),
    Setting("COMMENT_TOP_IOCS", "5", "IOCs listed per object in the incident comment."),
    Setting(
        "DEFENDER_BASE_URL",
        "https://api.security.microsoft.com",
        "Defender for Endpoint API endpoint (or a regional one such as eu.api...).",
    ),
    Setting(
        "DEFENDER_TOKEN_SCOPE",
        "https://api.securitycenter.microsoft.com/.default",
        "Token scope of the Defender for Endpoint API (WindowsDefenderATP).",
    ),
    Setting(
        "UPLOAD_BLOB_ENDPOINT",
        "",
        "Blob endpoint of the upload storage account; empty turns file analysis off.",
    ),
    Setting(
        "UPLOAD_ACCOUNT_KEY",
        "",
        "Account key for SAS signing; only for a loopback Azurite endpoint.",
        secret=True,
    ),
    Setting(
        "UPLOAD_DEADLINE_MINUTES",
        "30",
        "Minutes from the Live Response request to the upload; also the SAS lifetime.",
    ),
    Setting(
        "FILE_OPT_TIMEOUT", "240", "ANY.RUN opt_timeout for file analyses, seconds."
    ),
    Setting(
        "WINDOWS_ENV_VERSION", "10", "ANY.RUN env_version for files from Windows hosts."
    ),
    Setting(
        "WINDOWS_ENV_BITNESS", "64", "ANY.RUN env_bitness for files from Windows hosts."
    ),
    Setting(
        "WINDOWS_ENV_TYPE", "complete", "ANY.RUN env_type for files from Windows hosts."
    ),
    Setting(
        "LINUX_ENV_VERSION",
        "22.04.2",
        "ANY.RUN env_version for files from Linux hosts (22.04.2 is Ubuntu).",
    ),
    Setting(
        "FILE_START_FOLDER",
        "temp",
        "ANY.RUN obj_ext_startfolder for files: desktop, home, downloads or temp.",
    ),
    Setting(
        "UPLOAD_CONTAINER",
        "uploads",
        "Blob container that Live Response scripts upload files into.",
    ),
)

_BY_NAME = {item.name: item for item in SETTINGS}

_PRIVACY_TYPES = ("public", "bylink", "owner", "byteam")
_REPUTATIONS = ("malicious", "suspicious")
WAIT_POLICIES = ("remaining", "fixed", "poll")


@dataclass(frozen=True)
class Settings:
    """Typed view of the app settings."""

    anyrun_api_key: str
    anyrun_base_url: str
    anyrun_connector_id: str
    arm_base_url: str
    sentinel_api_version: str
    ti_base_url: str
    ti_api_version: str
    arm_token_scope: str
    local_bearer_token: str
    azure_client_id: str
    http_timeout_seconds: float
    http_max_attempts: int
    http_max_retry_wait_seconds: float
    url_options: dict[str, Any]
    analysis_deadline_margin_seconds: int
    status_check_min_seconds: int
    status_wait_policy: str
    reuse_window_hours: int
    sandbox_max_parallel: int
    analysis_table_endpoint: str
    analysis_table_account_key: str
    analysis_table_name: str
    max_objects_per_incident: int
    label_prefix: str
    indicator_reputations: tuple[str, ...]
    indicator_valid_days: int
    ti_source_system: str
    comment_top_iocs: int
    upload_container: str
    defender_base_url: str
    defender_token_scope: str
    upload_blob_endpoint: str
    upload_account_key: str
    upload_deadline_minutes: int
    file_options: dict[str, dict[str, Any]]
    uses_emulators: bool = field(default=False)

    def plan_options(self) -> dict[str, Any]:
        """Return the non-secret settings an orchestration needs, as plain JSON."""
        return {
            "url_options": dict(self.url_options),
            "file_options": {os: dict(opts) for os, opts in self.file_options.items()},
            "files_enabled": bool(self.upload_blob_endpoint),
            "upload_deadline_minutes": self.upload_deadline_minutes,
            "deadline_margin_seconds": self.analysis_deadline_margin_seconds,
            "status_check_min_seconds": self.status_check_min_seconds,
            "wait_policy": self.status_wait_policy,
            "reuse_window_hours": self.reuse_window_hours,
            "records_enabled": bool(self.analysis_table_endpoint),
            "label_prefix": self.label_prefix,
            "indicator_reputations": list(self.indicator_reputations),
            "indicator_valid_days": self.indicator_valid_days,
            "comment_top_iocs": self.comment_top_iocs,
        }


def _raw(env: Mapping[str, str], name: str) -> str:
    value = (env.get(name) or "").strip()
    if not value:
        default = _BY_NAME[name].default
        if default is None:
            raise SettingsError(
                f"{name} is missing: set the app setting {name} "
                f"({_BY_NAME[name].description})"
            )
        return default
    if value.startswith("@Microsoft.KeyVault("):
        # App Service passes a reference it could not resolve on as its text.
        raise SettingsError(
            f"{name} is a Key Vault reference that App Service could not resolve: "
            "check the secret URI and that the app's identity has Key Vault "
            "Secrets User on the vault (the portal shows the reference's status "
            "under Environment variables)"
        )
    return value


def _shown_url(text: str) -> str:
    """Describe a URL setting without its path, query or credentials."""
    try:
        parts = urlsplit(text)
        scheme, host = parts.scheme, parts.hostname
    except ValueError:
        scheme, host = "", None
    if scheme and host:
        return f"a value starting {scheme}://{host}"
    # The value may be a connection string or a key pasted into the wrong
    # setting, so nothing of it is shown.
    return f"a value of {len(text)} characters that is not a URL"


def _integer(env: Mapping[str, str], name: str, low: int, high: int) -> int:
    text = _raw(env, name)
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _number(env: Mapping[str, str], name: str, low: float, high: float) -> float:
    text = _raw(env, name)
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {text!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _boolean(env: Mapping[str, str], name: str) -> bool:
    text = _raw(env, name).lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise SettingsError(f"{name} must be true or false, got {text!r}")


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    text = _raw(env, name)
    if text not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {text!r}")
    return text


def is_loopback_url(url: str) -> bool:
    """Tell whether a URL's host is a loopback address or `localhost`."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _base_url(env: Mapping[str, str], name: str) -> str:
    text = _raw(env, name).rstrip("/")
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:
        raise SettingsError(
            f"{name} is not a valid URL, got {_shown_url(text)}; "
            "set it to an absolute https URL such as https://host.example"
        ) from None
    if parts.scheme not in ("https", "http") or not host:
        raise SettingsError(
            f"{name} must be an absolute http(s) URL such as "
            f"https://host.example, got {_shown_url(text)}"
        )
    if parts.scheme == "http" and not is_loopback_url(text):
        raise SettingsError(
            f"{name} must use https unless it points at a loopback emulator, "
            f"got {_shown_url(text)}"
        )
    if parts.query or parts.fragment:
        raise SettingsError(f"{name} must not carry a query or fragment")
    return text


def _url_options(env: Mapping[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {
        "env_os": _choice(env, "URL_ENV_OS", ("windows", "linux")),
        "env_version": _raw(env, "URL_ENV_VERSION"),
        "env_bitness": _integer(env, "URL_ENV_BITNESS", 32, 64),
        "env_type": _choice(env, "URL_ENV_TYPE", ("complete", "development")),
        "env_locale": _raw(env, "ENV_LOCALE"),
        "obj_ext_browser": _raw(env, "URL_BROWSER"),
        "opt_timeout": _integer(env, "URL_OPT_TIMEOUT", 10, 660),
        "opt_privacy_type": _choice(env, "OPT_PRIVACY_TYPE", _PRIVACY_TYPES),
        "opt_network_connect": _boolean(env, "OPT_NETWORK_CONNECT"),
        "opt_network_fakenet": _boolean(env, "OPT_NETWORK_FAKENET"),
        "opt_network_tor": _boolean(env, "OPT_NETWORK_TOR"),
        "opt_network_mitm": _boolean(env, "OPT_NETWORK_MITM"),
        "opt_network_geo": _raw(env, "OPT_NETWORK_GEO"),
        "opt_automated_interactivity": _boolean(env, "OPT_AUTOMATED_INTERACTIVITY"),
    }
    if options["env_bitness"] not in (32, 64):
        raise SettingsError("URL_ENV_BITNESS must be 32 or 64")
    return options


def _container(env: Mapping[str, str], name: str) -> str:
    text = _raw(env, name)
    # Azure container names: 3-63 characters, lower-case letters, digits and
    # single hyphens, starting and ending with a letter or digit.
    if not re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}", text):
        raise SettingsError(
            f"{name} must be a valid container name (3-63 lower-case letters, "
            f"digits and single hyphens), got {text!r}"
        )
    return text


def _upload(env: Mapping[str, str]) -> dict[str, str]:
    endpoint = _raw(env, "UPLOAD_BLOB_ENDPOINT")
    key = _raw(env, "UPLOAD_ACCOUNT_KEY")
    if endpoint:
        endpoint = _base_url(env, "UPLOAD_BLOB_ENDPOINT")
    if key and not (endpoint and is_loopback_url(endpoint)):
        raise SettingsError(
            "UPLOAD_ACCOUNT_KEY is set but UPLOAD_BLOB_ENDPOINT is not a loopback "
            "Azurite endpoint: remove it, so that SAS URLs are signed with a user "
            "delegation key of the managed identity"
        )
    return {"upload_blob_endpoint": endpoint, "upload_account_key": key}


def _analysis_table(env: Mapping[str, str]) -> dict[str, str]:
    endpoint = _raw(env, "ANALYSIS_TABLE_ENDPOINT")
    key = _raw(env, "ANALYSIS_TABLE_ACCOUNT_KEY")
    if endpoint:
        endpoint = _base_url(env, "ANALYSIS_TABLE_ENDPOINT")
    if key and not (endpoint and is_loopback_url(endpoint)):
        raise SettingsError(
            "ANALYSIS_TABLE_ACCOUNT_KEY is set but ANALYSIS_TABLE_ENDPOINT is not a "
            "loopback Azurite endpoint: remove it, so that the managed identity is used"
        )
    name = _raw(env, "ANALYSIS_TABLE_NAME")
    # Azure table names: 3-63 letters and digits, starting with a letter.
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", name):
        raise SettingsError(
            "ANALYSIS_TABLE_NAME must be 3-63 letters and digits starting with a "
            f"letter, got {name!r}"
        )
    return {
        "analysis_table_endpoint": endpoint,
        "analysis_table_account_key": key,
        "analysis_table_name": name,
    }


def _file_options(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Return the ANY.RUN options for files, per host OS family."""
    common: dict[str, Any] = {
        key: value
        for key, value in _url_options(env).items()
        if key.startswith("opt_") or key == "env_locale"
    }
    common["opt_timeout"] = _integer(env, "FILE_OPT_TIMEOUT", 10, 660)
    common["obj_ext_startfolder"] = _choice(
        env, "FILE_START_FOLDER", ("desktop", "home", "downloads", "temp")
    )
    common.pop("opt_automated_interactivity", None)
    bitness = _integer(env, "WINDOWS_ENV_BITNESS", 32, 64)
    if bitness not in (32, 64):
        raise SettingsError("WINDOWS_ENV_BITNESS must be 32 or 64")
    windows = {
        **common,
        "env_os": "windows",
        "env_version": _raw(env, "WINDOWS_ENV_VERSION"),
        "env_bitness": bitness,
        "env_type": _choice(env, "WINDOWS_ENV_TYPE", ("complete", "development")),
        "opt_automated_interactivity": _boolean(env, "OPT_AUTOMATED_INTERACTIVITY"),
    }
    linux = {
        **common,
        "env_os": "linux",
        "env_version": _raw(env, "LINUX_ENV_VERSION"),
        "env_bitness": 64,
    }
    return {"windows": windows, "linux": linux}


def _reputations(env: Mapping[str, str]) -> tuple[str, ...]:
    names = tuple(
        part.strip().lower() for part in _raw(env, "INDICATOR_REPUTATIONS").split(",")
    )
    unknown = [name for name in names if name not in _REPUTATIONS]
    if unknown or not names:
        raise SettingsError(
            "INDICATOR_REPUTATIONS must list malicious and/or suspicious, "
            f"got {', '.join(unknown) or 'nothing'}"
        )
    return tuple(sorted(set(names)))


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise SettingsError naming the first bad one."""
    env = os.environ if env is None else env
    microsoft_urls = {
        "SENTINEL_ARM_BASE_URL": _base_url(env, "SENTINEL_ARM_BASE_URL"),
        "SENTINEL_TI_BASE_URL": _base_url(env, "SENTINEL_TI_BASE_URL"),
        "DEFENDER_BASE_URL": _base_url(env, "DEFENDER_BASE_URL"),
    }
    emulated = [name for name, url in microsoft_urls.items() if is_loopback_url(url)]
    uses_emulators = len(emulated) == len(microsoft_urls)
    if emulated and not uses_emulators:
        raise SettingsError(
            f"{', '.join(emulated)} point at loopback but the other Microsoft base "
            "URLs do not: point all of them at the emulators or none"
        )
    local_token = _raw(env, "LOCAL_BEARER_TOKEN")
    if uses_emulators and not local_token:
        raise SettingsError(
            "LOCAL_BEARER_TOKEN is missing: the Microsoft base URLs point at loopback "
            "emulators, which need the static token they were started with"
        )
    if local_token and not uses_emulators:
        raise SettingsError(
            "LOCAL_BEARER_TOKEN is set but the Microsoft base URLs are not loopback "
            "emulators: remove it so the managed identity is used"
        )

    return Settings(
        anyrun_api_key=_raw(env, "ANYRUN_API_KEY"),
        anyrun_base_url=_base_url(env, "ANYRUN_BASE_URL"),
        anyrun_connector_id=_raw(env, "ANYRUN_CONNECTOR_ID"),
        arm_base_url=microsoft_urls["SENTINEL_ARM_BASE_URL"],
        sentinel_api_version=_raw(env, "SENTINEL_API_VERSION"),
        ti_base_url=microsoft_urls["SENTINEL_TI_BASE_URL"],
        ti_api_version=_raw(env, "SENTINEL_TI_API_VERSION"),
        arm_token_scope=_raw(env, "ARM_TOKEN_SCOPE"),
        local_bearer_token=local_token,
        azure_client_id=_raw(env, "AZURE_CLIENT_ID"),
        http_timeout_seconds=_number(env, "HTTP_TIMEOUT_SECONDS", 1, 300),
        http_max_attempts=_integer(env, "HTTP_MAX_ATTEMPTS", 1, 10),
        http_max_retry_wait_seconds=_number(env, "HTTP_MAX_RETRY_WAIT_SECONDS", 0, 600),
        url_options=_url_options(env),
        analysis_deadline_margin_seconds=_integer(
            env, "ANALYSIS_DEADLINE_MARGIN_SECONDS", 60, 86_400
        ),
        status_check_min_seconds=_integer(env, "STATUS_CHECK_MIN_SECONDS", 1, 3_600),
        status_wait_policy=_choice(env, "STATUS_WAIT_POLICY", WAIT_POLICIES),
        reuse_window_hours=_integer(env, "REUSE_WINDOW_HOURS", 0, 720),
        sandbox_max_parallel=_integer(env, "SANDBOX_MAX_PARALLEL", 0, 1_000),
        **_analysis_table(env),
        max_objects_per_incident=_integer(env, "MAX_OBJECTS_PER_INCIDENT", 1, 200),
        label_prefix=_raw(env, "LABEL_PREFIX"),
        indicator_reputations=_reputations(env),
        indicator_valid_days=_integer(env, "INDICATOR_VALID_DAYS", 1, 3_650),
        ti_source_system=_raw(env, "TI_SOURCE_SYSTEM"),
        comment_top_iocs=_integer(env, "COMMENT_TOP_IOCS", 0, 50),
        upload_container=_container(env, "UPLOAD_CONTAINER"),
        defender_base_url=microsoft_urls["DEFENDER_BASE_URL"],
        defender_token_scope=_raw(env, "DEFENDER_TOKEN_SCOPE"),
        **_upload(env),
        upload_deadline_minutes=_integer(env, "UPLOAD_DEADLINE_MINUTES", 5, 4_320),
        file_options=_file_options(env),
        uses_emulators=uses_emulators,
    )


@lru_cache(maxsize=1)
def current() -> Settings:
    """Return the process-wide settings, loaded on first use."""
    return load()


def describe() -> str:
    """Render the registry as JSON, for docs and template checks."""
    return json.dumps(
        [{"name": s.name, "default": s.default, "secret": s.secret} for s in SETTINGS],
        indent=2,
    )
