"""API clients, created once per worker process from the settings."""

from __future__ import annotations

import threading

from clients.anyrun import AnyRunClient
from clients.credentials import TokenProvider, build_credential
from clients.redaction import install as install_redaction
from clients.sentinel import SentinelClient, ThreatIntelligenceClient
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
    tokens = TokenProvider(build_credential(settings), settings.arm_token_scope)
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


def reset() -> None:
    """Drop the cached clients (tests that change settings call this)."""
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
    current.cache_clear()
