"""Keeping SAS URLs out of everything the Defender emulator stores or shows.

A RunScript ``Args`` value is a ``v1.`` envelope whose JSON carries a blob SAS
URL. So actions keep ``ARGS_REDACTED`` in its place, and only the task that
runs the script has the real value. Script output and
error text pass through ``redact_text`` before they are stored. httpx, which
performs the Windows uploads, logs every request URL at INFO, so
``install_log_filter`` rewrites the ``sig=`` values of its log records.
"""

import logging
import re

ARGS_REDACTED = "<redacted: Args may contain a SAS URL>"
_SIG = re.compile(r"sig=[^&\s\"'<>]+", re.IGNORECASE)


def redact_text(text: str, url: str = "", query: str = "") -> str:
    """Replace the URL, its query string and every ``sig=`` value in ``text``."""
    if url:
        text = text.replace(url, "<url>")
    if query:
        text = text.replace(query, "<sas>")
    return _SIG.sub("sig=<redacted>", text)


class SasLogFilter(logging.Filter):
    """Rewrite log records whose message contains a ``sig=`` value."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        clean = redact_text(message)
        if clean != message:
            record.msg = clean
            record.args = None
        return True


_FILTER = SasLogFilter()


def install_log_filter() -> None:
    """Attach the filter to httpx's logger once per process."""
    logger = logging.getLogger("httpx")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
