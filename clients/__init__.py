"""API clients, created once per worker process from the settings."""

from __future__ import annotations

import threading

from clients.anyrun import AnyRunClient
from clients.credentials import TokenProvider, build_credential
from clients.defender import DefenderClient
from clients.redaction import install as install_redaction
from clients.sentinel import SentinelClient, ThreatIntelligenceClient
from clients.storage import UploadStore
from clients.tables import AnalysisTable
from settings import Settings, current

_lock = threading.Lock()
_clients: dict[str, object] = {}


def _common(settings: Settings) -> dict:
    return {
        "timeout_seconds": settings.http_timeout_seconds,
        "max_attempts": settings.http_max_attempts,
        "max_retry_wait_seconds": settings.http_max_retry_wait_seconds,
    }


def _build(name: str, settings: Settings) -> object:
    if name == "anyrun":
        return AnyRunClient(
            settings.anyrun_base_url,
            settings.anyrun_api_key,
            connector_id=settings.anyrun_connector_id,
            **_common(settings),
        )
    if name == "defender":
        tokens = TokenProvider(_credential(settings), settings.defender_token_scope)
        return DefenderClient(settings.defender_base_url, tokens, **_common(settings))
    if name == "uploads":
        if not settings.upload_blob_endpoint:
            raise RuntimeError("file analysis is off: UPLOAD_BLOB_ENDPOINT is not set")
        return UploadStore(
            settings.upload_blob_endpoint,
            settings.upload_container,
            credential=None if settings.upload_account_key else _credential(settings),
            account_key=settings.upload_account_key,
        )
    if name == "table":
        key = settings.analysis_table_account_key
        return AnalysisTable(
            settings.analysis_table_endpoint,
            settings.analysis_table_name,
            credential=None if key else _credential(settings),
            account_key=key,
        )
    tokens = TokenProvider(_credential(settings), settings.arm_token_scope)
    if name == "sentinel":
        return SentinelClient(
            settings.arm_base_url,
            tokens,
            api_version=settings.sentinel_api_version,
            **_common(settings),
        )
    if name == "ti":
        return ThreatIntelligenceClient(
            settings.ti_base_url,
            tokens,
            api_version=settings.ti_api_version,
            **_common(settings),
        )
    raise KeyError(name)


def _credential(settings: Settings):
    credential = _clients.get("credential")
    if credential is None:
        credential = _clients["credential"] = build_credential(settings)
    return credential


def _get(name: str):
    with _lock:
        client = _clients.get(name)
        if client is None:
            install_redaction()
            client = _clients[name] = _build(name, current())
        return client


def anyrun() -> AnyRunClient:
    return _get("anyrun")


def sentinel() -> SentinelClient:
    return _get("sentinel")


def threat_intelligence() -> ThreatIntelligenceClient:
    return _get("ti")


def defender() -> DefenderClient:
    return _get("defender")


def uploads() -> UploadStore:
    return _get("uploads")


def analysis_table() -> AnalysisTable | None:
    """Return the analysis table, or None when ANALYSIS_TABLE_ENDPOINT is empty."""
    if not current().analysis_table_endpoint:
        return None
    return _get("table")


def reset() -> None:
    """Drop the cached clients (tests that change settings call this)."""
    with _lock:
        for client in _clients.values():
            close = getattr(client, "close", None)
            if close is not None:
                close()
        _clients.clear()
    current.cache_clear()
