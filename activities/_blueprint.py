"""The blueprint every activity registers on, and the input check they share."""

from typing import Any

import azure.durable_functions as df

bp = df.Blueprint()


def require(payload: Any, *keys: str, allow_empty: bool = False) -> dict[str, Any]:
    """Check an activity input object; raise ValueError naming missing keys."""
    if not isinstance(payload, dict):
        raise ValueError(
            f"activity input must be an object, got {type(payload).__name__}"
        )
    if allow_empty:
        missing = [key for key in keys if key not in payload]
    else:
        missing = [key for key in keys if not payload.get(key)]
    if missing:
        raise ValueError(f"activity input is missing {', '.join(missing)}")
    return payload
