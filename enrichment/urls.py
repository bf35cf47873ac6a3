"""URL entities: refang, normalise and decide whether the sandbox may open them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import idna

# ANY.RUN accepts obj_url values of 5 to 512 characters.
MIN_URL_CHARS = 5
MAX_URL_CHARS = 512

# Refanging never lengthens a URL, but "[ . ]" may hide any amount of padding,
# so no exact bound on the raw text exists. Longer text is skipped unparsed.
MAX_RAW_URL_CHARS = 16 * MAX_URL_CHARS

# DNS limits (RFC 1035): 63 octets per label, 253 characters per name.
MAX_HOST_CHARS = 253
_ASCII_HOST = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Control characters other than tab and line breaks, and unpaired surrogates.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

ANALYSED_SCHEMES = ("http", "https")

_REFANG = (
    (re.compile(r"^\s*hxxps", re.IGNORECASE), "https"),
    (re.compile(r"^\s*hxxp", re.IGNORECASE), "http"),
    (re.compile(r"^\s*fxp", re.IGNORECASE), "ftp"),
    (
        re.compile(
            r"\[\s*(?:\.|dot)\s*\]|\(\s*(?:\.|dot)\s*\)|\{\s*(?:\.|dot)\s*\}", re.I
        ),
        ".",
    ),
    (re.compile(r"\[\s*:\s*\]"), ":"),
    (re.compile(r"\[\s*/\s*\]"), "/"),
    (re.compile(r"\[://\]"), "://"),
)

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class UrlVerdict:
    """The outcome of checking one URL entity: analysable, or skipped with a reason."""

    original: str
    url: str | None
    reason: str | None = None

    @property
    def analysable(self) -> bool:
        return self.url is not None


def refang(text: str) -> str:
    """Undo the usual defanging: hxxp, [.], (.), [:], [dot] and the like."""
    result = text.strip()
    for pattern, replacement in _REFANG:
        result = pattern.sub(replacement, result)
    return result


def shown(text: str, limit: int) -> str:
    """Clip text for a report and replace unprintable characters with U+FFFD.

    JSON escapes such as "\\ud800" decode to unpaired surrogates, and any
    later UTF-8 encoding of them (the Sentinel comment, an API call) fails.
    """
    return _UNPRINTABLE.sub("\ufffd", text[:limit])


def _host(hostname: str) -> str:
    """Return the host in lower-case ASCII form, or raise ValueError if invalid.

    Non-ASCII hosts are converted with UTS #46 non-transitional processing, as
    browsers do, so "faß.de" becomes xn--fa-hia.de and not fass.de.
    """
    host = hostname.rstrip(".").lower()
    if ":" in host:
        # An IPv6 literal: urlsplit has already checked the brackets and address.
        return host
    if len(host) > 4 * MAX_HOST_CHARS:
        # Far past any DNS name; not worth the IDNA conversion.
        raise ValueError(f"the host is {len(host)} characters long")
    if not host.isascii():
        host = idna.encode(host, uts46=True, transitional=False).decode("ascii")
    if len(host) > MAX_HOST_CHARS or not _ASCII_HOST.fullmatch(host):
        raise ValueError(
            f"{shown(host, 80)!r} is not a host name: it needs labels of 1 to 63 "
            "letters, digits, hyphens or underscores, 253 characters in all"
        )
    return host


def normalise(raw: str) -> UrlVerdict:
    """Refang and normalise a URL; return it, or the reason it is not analysed."""
    if not isinstance(raw, str) or not raw.strip():
        return UrlVerdict(str(raw), None, "the URL is empty")
    if len(raw) > MAX_RAW_URL_CHARS:
        return UrlVerdict(
            raw,
            None,
            f"the URL is {len(raw)} characters; the sandbox accepts {MAX_URL_CHARS}",
        )
    if _SURROGATE.search(raw):
        return UrlVerdict(
            raw, None, "the URL contains an unpaired UTF-16 surrogate (invalid text)"
        )
    text = refang(raw)
    if _CONTROL.search(text):
        return UrlVerdict(raw, None, "the URL contains control characters")
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        return UrlVerdict(
            raw, None, f"the URL cannot be parsed ({shown(str(exc), 200)})"
        )

    scheme = parts.scheme.lower()
    if not scheme:
        return UrlVerdict(raw, None, "the URL has no scheme")
    if scheme not in ANALYSED_SCHEMES:
        return UrlVerdict(
            raw, None, f"scheme '{scheme}' is not analysed; only http and https are"
        )
    if not parts.hostname:
        return UrlVerdict(raw, None, "the URL has no host")

    try:
        host = _host(parts.hostname)
        port = parts.port
    except (UnicodeError, ValueError) as exc:
        # idna.IDNAError is a UnicodeError; a bad port raises ValueError.
        return UrlVerdict(
            raw, None, f"the URL host is invalid ({shown(str(exc), 200)})"
        )
    if port == 0:
        return UrlVerdict(raw, None, "the URL host is invalid (port 0)")

    netloc = host if not parts.hostname.startswith("[") else f"[{host}]"
    if ":" in host and not host.startswith("["):
        netloc = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"

    url = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    if len(url) > MAX_URL_CHARS:
        return UrlVerdict(
            raw,
            None,
            f"the URL is {len(url)} characters; the sandbox accepts {MAX_URL_CHARS}",
        )
    if len(url) < MIN_URL_CHARS:
        return UrlVerdict(raw, None, "the URL is too short for the sandbox")
    return UrlVerdict(raw, url)


def defang(url: str) -> str:
    """Make a URL unclickable for display in comments: hxxp and [.] in the host."""
    text = re.sub(r"^http", "hxxp", url, flags=re.IGNORECASE)
    parts = text.split("/", 3)
    if len(parts) >= 3:
        parts[2] = parts[2].replace(".", "[.]")
    return "/".join(parts)
