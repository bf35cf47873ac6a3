"""The function key that HTTP functions with authLevel function or admin require."""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger("devhost.keys")

KEY_ENV = "DEVHOST_FUNCTION_KEY"
KEY_FILE = "function_key"


def load_function_key(data_dir: Path) -> tuple[str, Path | None]:
    """Return the function key and the file it was read from.

    The key is `DEVHOST_FUNCTION_KEY` when that variable is set, and the file
    is then None. Otherwise the key is read from DIR/function_key, which is
    created on first start with a random key and mode 0600.
    """
    from_env = os.environ.get(KEY_ENV)
    if from_env:
        return from_env, None

    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Written to a temporary file and renamed, so a killed process never
        # leaves an empty key file behind.
        partial = path.with_suffix(".tmp")
        partial.unlink(missing_ok=True)
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(secrets.token_urlsafe(32) + "\n")
        os.replace(partial, path)
        log.info("function_key.created path=%s", path)
    key = path.read_text(encoding="utf-8").strip()
    if not key:
        raise ValueError(
            f"function key file {path} is empty; delete it to get a new key"
        )
    return key, path


def key_matches(expected: str, provided: str | None) -> bool:
    if not provided:
        return False
    return hmac.compare_digest(expected.encode(), provided.encode())
