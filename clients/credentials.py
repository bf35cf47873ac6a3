"""Azure credentials for the Microsoft APIs.

In Azure the app uses its managed identity through `DefaultAzureCredential`.
Against local emulators (every Microsoft base URL on loopback, checked by
`settings.load`) it uses a static token instead, so that no credential ever
probes a metadata endpoint or a developer login on this machine.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential

from clients.redaction import register_secret
from settings import Settings


class StaticTokenCredential:
    """A TokenCredential that returns one fixed token, for loopback emulators only."""

    def __init__(self, token: str):
        if not token:
            raise ValueError("StaticTokenCredential needs a non-empty token")
        self._token = token
        register_secret(token)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    def close(self) -> None:
        pass


def build_credential(settings: Settings) -> TokenCredential:
    """Return the static credential for emulators, else DefaultAzureCredential."""
    if settings.uses_emulators:
        return StaticTokenCredential(settings.local_bearer_token)

    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(
        managed_identity_client_id=settings.azure_client_id or None,
        exclude_interactive_browser_credential=True,
    )


class TokenProvider:
    """Caches one bearer token per scope and renews it five minutes before expiry."""

    def __init__(self, credential: TokenCredential, scope: str):
        self._credential = credential
        self._scope = scope
        self._token: AccessToken | None = None
        self._lock = threading.Lock()

    def header(self) -> dict[str, str]:
        with self._lock:
            if self._token is None or self._token.expires_on - time.time() < 300:
                self._token = self._credential.get_token(self._scope)
                register_secret(self._token.token)
            return {"Authorization": f"Bearer {self._token.token}"}

    def invalidate(self) -> None:
        with self._lock:
            self._token = None
