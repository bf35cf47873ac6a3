"""Bearer tokens of the Sentinel and Defender emulators, and the tokens that expired.

An emulator accepts its configured token T, or T followed by a dot and a suffix
of 8 to 64 characters from ``[A-Za-z0-9_-]``. A client makes a new token by
choosing a new suffix, so the ``expire_token`` fault can expire one token while
the next one works. Expired tokens are kept as SHA-256 digests, never as text.
"""

import enum
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime

from emulators.clock import EmulatedClock

BEARER_HEADER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)
_SUFFIX = re.compile(rb"[A-Za-z0-9_-]{8,64}")
# The WWW-Authenticate challenge of the 401 for an expired token.
EXPIRED_CHALLENGE = (
    'Bearer error="invalid_token", error_description="The access token expired"'
)


class TokenState(enum.Enum):
    MISSING = "missing"  # no Authorization header
    INVALID = "invalid"  # not a bearer token of this emulator
    EXPIRED = "expired"
    VALID = "valid"


@dataclass(frozen=True)
class TokenCheck:
    """The result of checking an Authorization header.

    ``token`` is the bearer token for EXPIRED and VALID, else None.
    ``expired_at`` is the emulated UTC time when an EXPIRED token expired.
    """

    state: TokenState
    token: str | None = None
    expired_at: datetime | None = None


class BearerTokens:
    """The configured bearer token of one emulator and the tokens that expired."""

    def __init__(self, base_token: str, clock: EmulatedClock) -> None:
        self._base = base_token.encode()
        self._clock = clock
        self._expired: dict[bytes, datetime] = {}

    def check(self, header: str | None) -> TokenCheck:
        if header is None:
            return TokenCheck(TokenState.MISSING)
        match = BEARER_HEADER.match(header)
        if match is None or not self._is_ours(match.group(1).encode()):
            return TokenCheck(TokenState.INVALID)
        token = match.group(1)
        expired_at = self._expired.get(_digest(token))
        if expired_at is not None:
            return TokenCheck(TokenState.EXPIRED, token, expired_at)
        return TokenCheck(TokenState.VALID, token)

    def expire(self, token: str) -> TokenCheck:
        """Expire ``token`` now and return its check result, which is EXPIRED."""
        expired_at = self._clock.utc()
        self._expired.setdefault(_digest(token), expired_at)
        return TokenCheck(TokenState.EXPIRED, token, self._expired[_digest(token)])

    @property
    def expired_count(self) -> int:
        return len(self._expired)

    def clear(self) -> None:
        self._expired.clear()

    def _is_ours(self, token: bytes) -> bool:
        """Compare the base part in constant time, then check the suffix form."""
        base_length = len(self._base)
        if len(token) == base_length:
            return hmac.compare_digest(token, self._base)
        base_matches = hmac.compare_digest(token[:base_length], self._base)
        separator = token[base_length : base_length + 1] == b"."
        suffix = _SUFFIX.fullmatch(token[base_length + 1 :]) is not None
        return base_matches and separator and suffix


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
