"""STIX 2.1 indicators from sandbox IOCs, built and validated with the stix2 library.

Each indicator id is derived from its pattern, so uploading the same IOC again
(from another object, a replay or a redelivered activity) updates the one
indicator instead of adding a second.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import stix2

from enrichment.results import NAMESPACE

CONFIDENCE = {"malicious": 90, "suspicious": 60}

_HASH_NAMES = {"sha256": "SHA-256", "sha1": "SHA-1", "md5": "MD5"}
_HASH_LENGTHS = {"sha256": 64, "sha1": 40, "md5": 32}


def _quote(value: str) -> str:
    """Escape a value for a STIX pattern string literal."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def pattern_for(ioc_type: str, value: str) -> str | None:
    """Return the STIX pattern of one IOC, or None for types not uploaded."""
    value = value.strip()
    if not value:
        return None
    if ioc_type == "ip":
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return None
        kind = "ipv4-addr" if address.version == 4 else "ipv6-addr"
        return f"[{kind}:value = '{address.compressed}']"
    if ioc_type == "domain":
        return f"[domain-name:value = '{_quote(value.lower().rstrip('.'))}']"
    if ioc_type == "url":
        return f"[url:value = '{_quote(value)}']"
    if ioc_type in _HASH_NAMES:
        digest = value.lower()
        if len(digest) != _HASH_LENGTHS[ioc_type] or any(
            c not in "0123456789abcdef" for c in digest
        ):
            return None
        return f"[file:hashes.'{_HASH_NAMES[ioc_type]}' = '{digest}']"
    return None


def indicator_id(pattern: str) -> str:
    return f"indicator--{uuid.uuid5(NAMESPACE, pattern)}"


def build_indicators(
    results: list[dict[str, Any]],
    *,
    reputations: list[str],
    valid_days: int,
    label_prefix: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """Turn the IOCs of finished analyses into unique STIX indicator dicts."""
    by_id: dict[str, dict[str, Any]] = {}
    for result in results:
        if result.get("status") != "done":
            continue
        for ioc in result.get("indicator_iocs") or []:
            reputation = ioc.get("reputation")
            if reputation not in reputations:
                continue
            pattern = pattern_for(ioc.get("type", ""), ioc.get("value", ""))
            if pattern is None:
                continue
            ident = indicator_id(pattern)
            if ident in by_id:
                continue
            indicator = stix2.v21.Indicator(
                id=ident,
                created=now,
                modified=now,
                name=f"{ioc.get('type')} {ioc.get('value')}"[:250],
                description=(
                    f"{reputation.capitalize()} IOC seen by the ANY.RUN sandbox "
                    f"in task {result.get('task_url') or result.get('task_id')}"
                ),
                pattern=pattern,
                pattern_type="stix",
                valid_from=now,
                valid_until=now + timedelta(days=valid_days),
                indicator_types=["malicious-activity"]
                if reputation == "malicious"
                else ["anomalous-activity"],
                confidence=CONFIDENCE[reputation],
                labels=[label_prefix, reputation],
                external_references=[
                    {
                        "source_name": "ANY.RUN",
                        "url": result.get("task_url") or "",
                        "external_id": result.get("task_id") or "",
                    }
                ],
            )
            by_id[ident] = json.loads(indicator.serialize())
    return [by_id[key] for key in sorted(by_id)]
