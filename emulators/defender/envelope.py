"""The Live Response upload scripts' argument: ``v1.<unpadded base64url JSON>``.

The JSON object has ``path``, ``sha256``, ``url`` (a blob SAS URL) and the
optional ``sha1``, ``max_bytes`` and ``threat_name``; scripts/liveresponse/
README.md describes it. The emulator decodes it leniently here only to rewrite
``path`` and to check where ``url`` points. The scripts, or the Windows
emulation of the PowerShell script, still validate every field themselves.
"""

import base64
import ipaddress
import json
import re
from typing import Any

PREFIX = "v1."
# The URL shapes that anyrun-upload.sh accepts; anything else it rejects
# before it sends a request.
_URL = re.compile(r"^([a-z]+)://([^/?#]+)(/[^?#]*)\?([^#]*)$")
_AUTHORITY = re.compile(r"^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$")


def decode(argument: str) -> dict[str, Any] | None:
    """Return the envelope's JSON object, or None if ``argument`` is not one."""
    if not argument.startswith(PREFIX):
        return None
    encoded = argument[len(PREFIX) :]
    if not re.fullmatch(r"[A-Za-z0-9_-]+", encoded):
        return None
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def encode(fields: dict[str, Any]) -> str:
    data = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    text = base64.urlsafe_b64encode(data.encode("utf-8")).decode("ascii")
    return PREFIX + text.rstrip("=")


def url_host(url: str) -> str | None:
    """Return the lower-case host of a SAS URL in the shape the scripts accept.

    None means that the scripts reject the URL before sending anything.
    """
    match = _URL.match(url)
    if match is None:
        return None
    authority = _AUTHORITY.match(match.group(2))
    if authority is None:
        return None
    return authority.group(1).lower()


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
