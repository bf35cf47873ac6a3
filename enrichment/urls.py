"""URL entities: refang, normalise and decide whether the sandbox may open them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

# ANY.RUN accepts obj_url values of 5 to 512 characters.
MIN_URL_CHARS = 5
MAX_URL_CHARS = 512

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


def _host(hostname: str) -> str:
    """Return the host in ASCII (IDNA) form, lower-case."""
    host = hostname.rstrip(".").lower()
    if host.startswith("[") or host.replace(".", "").isdigit() or ":" in host:
        return host
    return host.encode("idna").decode("ascii")


def normalise(raw: str) -> UrlVerdict:
    """Refang and normalise a URL; return it, or the reason it is not analysed."""
    if not isinstance(raw, str) or not raw.strip():
        return UrlVerdict(str(raw), None, "the URL is empty")
    text = refang(raw)
    if any(ch in text for ch in "\r\n\t") or any(ord(ch) < 32 for ch in text):
        return UrlVerdict(raw, None, "the URL contains control characters")
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        return UrlVerdict(raw, None, f"the URL cannot be parsed ({exc})")

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
        return UrlVerdict(raw, None, f"the URL host is invalid ({exc})")

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
