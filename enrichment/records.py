"""Keys of analysis records: which submissions count as the same analysis."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def record_key(kind: str, value: str, options: dict[str, Any]) -> str:
    """Return the table row key of an object analysed with these sandbox options.

    `value` is the normalised URL or the file's SHA-256. The options are part
    of the key, so a file from a Windows host and the same file from a Linux
    host are two analyses, and a changed setting starts new ones.
    """
    text = json.dumps([kind, value, options], sort_keys=True, separators=(",", ":"))
    return f"{kind}-" + hashlib.sha256(text.encode()).hexdigest()


def submission_key(tag: str) -> str:
    """Return the row key of one sub-orchestration's own submission (no reuse)."""
    return f"tag-{tag}"
