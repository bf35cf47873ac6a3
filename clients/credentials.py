"""Azure credentials for the Microsoft APIs.

In Azure the app uses its managed identity through `DefaultAzureCredential`.
Against local emulators (every Microsoft base URL on loopback, checked by
`settings.load`) it uses a local credential instead, so that no credential
ever probes a metadata endpoint or a developer login on this machine.

`BearerClient` is the base of the clients that send these tokens: a 401
drops the cached token and the call is tried again with a new one, up to
`TOKEN_RENEWALS` times, because a token can expire or be revoked between two
calls, and another thread can drop the token this call was about to use.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

import httpx
from azure.core.credentials import AccessToken, TokenCredential

from clients import errors
from clients.http import ServiceClient
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


class LocalTokenCredential(StaticTokenCredential):
    """Issues `<local token>.<random suffix>`, a new one on every request.

    The emulators accept any such token until an injected fault expires it, so
    a run against them renews tokens the way it does against Entra ID.
    """

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        token = f"{self._token}.{secrets.token_urlsafe(12)}"
        register_secret(token)
        return AccessToken(token, int(time.time()) + 3600)


def build_credential(settings: Settings) -> TokenCredential:
    """Return the local credential for emulators, else DefaultAzureCredential."""
    if settings.uses_emulators:
        return LocalTokenCredential(settings.local_bearer_token)

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


TOKEN_RENEWALS = 3


class BearerClient(ServiceClient):
    """A client that authenticates with bearer tokens from a TokenProvider."""

    def __init__(self, base_url: str, tokens: TokenProvider, **kwargs: Any):
        super().__init__(base_url, **kwargs)
        self._tokens = tokens

    def auth_headers(self) -> dict[str, str]:
        return self._tokens.header()

    def call(self, operation: str, method: str, path: str, **kwargs) -> httpx.Response:
        for _ in range(TOKEN_RENEWALS):
            try:
                return super().call(operation, method, path, **kwargs)
            except errors.AuthenticationError as exc:
                if exc.status != 401:
                    raise
                self._tokens.invalidate()
        return super().call(operation, method, path, **kwargs)
