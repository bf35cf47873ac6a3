"""Redaction of secrets from URLs, messages and log records.

The ANY.RUN key travels in `Authorization: API-Key ...`, tokens in
`Authorization: Bearer ...`, SAS signatures in `sig=` query parameters and
function keys in `code=`. httpx logs full request URLs at INFO, so besides
lowering its level, every log record passes `redact_text` before any handler
sees it (see `install`).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "REDACTED"

_PATTERNS = (
    # SAS signature, function key and similar secrets carried in query strings.
    (
        re.compile(
            r"(?i)\b(sig|code|se?cret|api[-_]?key|token|accountkey|sharedaccesskey)"
            r"=([^&;\s\"'<>]+)"
        ),
        r"\1=REDACTED",
    ),
    (re.compile(r"(?i)\b(api-key|bearer)\s+([A-Za-z0-9._~+/=-]{6,})"), r"\1 REDACTED"),
    (
        re.compile(r"(?i)(x-functions-key[\"']?\s*[:=]\s*[\"']?)([^\s\"',]+)"),
        r"\1REDACTED",
    ),
)

_installed = False
_secrets: set[str] = set()


def strip_query(url: str) -> str:
    """Return the URL without its query string and fragment."""
    parts = urlsplit(str(url))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def register_secret(value: str | None) -> None:
    """Add a literal value that must be masked wherever it appears."""
    if value and len(value) >= 6:
        _secrets.add(value)


def redact_text(text: str) -> str:
    """Mask every known secret shape and every registered secret value."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def install() -> None:
    """Redact every log record of the process and quieten httpx's URL logging.

    A record factory is used rather than a handler filter because the
    Functions worker attaches its own handlers after the app is imported.
    """
    global _installed
    if _installed:
        return
    _installed = True

    for name in (
        "httpx",
        "httpcore",
        "azure.core.pipeline.policies.http_logging_policy",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)

    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must not hide the record
            return record
        clean = redact_text(message)
        if clean != message:
            record.msg = clean
            record.args = None
        return record

    logging.setLogRecordFactory(factory)
