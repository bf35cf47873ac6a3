"""File entities: hashes, host, Defender device id and OS, from the trigger body.

A `File` entity names its hashes by entity id (`fileHashEntityIds`, resolved
against the `FileHash` entities) and its host by `hostEntityId`. The Defender
device id is `additionalData.MdatpDeviceId` on the Host entity, and on some
File entities too. A file that cannot be fetched (no hash, no host, an
unusable hash value) is reported with the reason instead of being dropped.
"""

from __future__ import annotations

import re
from typing import Any

HASH_LENGTHS = {"SHA256": 64, "SHA1": 40, "MD5": 32}
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_DEVICE_ID = re.compile(r"^[0-9a-fA-F]{40}$")

SUPPORTED_OS = {
    "windows": "windows",
    "linux": "linux",
    "ubuntu": "linux",
    "debian": "linux",
}


def os_family(name: Any) -> str | None:
    """Map an osFamily or Defender osPlatform value to windows or linux."""
    if not isinstance(name, str):
        return None
    lowered = name.strip().lower()
    if lowered.startswith("windows"):
        return "windows"
    return SUPPORTED_OS.get(lowered)


def _ids(entities: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        entity["id"].lower(): entity
        for entity in entities
        if isinstance(entity.get("id"), str)
    }


def _hashes(
    file_entity: dict[str, Any], by_id: dict[str, dict[str, Any]], path: str
) -> tuple[dict[str, str], str | None]:
    """Return the file's hashes by algorithm, or the reason one is unusable."""
    found: dict[str, str] = {}
    refs = (file_entity.get("properties") or {}).get("fileHashEntityIds") or []
    if not isinstance(refs, list):
        return {}, f"{path}.properties.fileHashEntityIds is not a list"
    for ref in refs:
        entity = by_id.get(str(ref).lower())
        if entity is None or entity.get("kind") != "FileHash":
            continue
        properties = entity.get("properties") or {}
        algorithm = str(properties.get("algorithm") or "").upper()
        value = properties.get("hashValue")
        if algorithm not in HASH_LENGTHS:
            continue
        if (
            not isinstance(value, str)
            or len(value) != HASH_LENGTHS[algorithm]
            or not _HEX.match(value)
        ):
            return {}, (
                f"FileHash entity {entity.get('name') or entity.get('id')}: "
                f"hashValue is not a {algorithm} "
                f"({HASH_LENGTHS[algorithm]} hexadecimal digits)"
            )
        found[algorithm] = value.lower()
    return found, None


def _host(
    file_entity: dict[str, Any],
    by_id: dict[str, dict[str, Any]],
    hosts: list[dict[str, Any]],
) -> dict[str, Any] | None:
    ref = (file_entity.get("properties") or {}).get("hostEntityId")
    if isinstance(ref, str) and ref.lower() in by_id:
        return by_id[ref.lower()]
    if len(hosts) == 1:
        return hosts[0]
    return None


def _device_id(*bags: Any) -> str | None:
    for bag in bags:
        if isinstance(bag, dict):
            value = bag.get("MdatpDeviceId")
            if isinstance(value, str) and _DEVICE_ID.match(value):
                return value.lower()
    return None


def extract_files(entities: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """Return (file objects, skipped files) from the incident's entities."""
    by_id = _ids(entities)
    hosts = [e for e in entities if e.get("kind") == "Host"]
    objects: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []

    for index, entity in enumerate(entities):
        if entity.get("kind") != "File":
            continue
        path = f"object.properties.relatedEntities[{index}]"
        properties = entity.get("properties") or {}
        name = properties.get("fileName")
        if not isinstance(name, str) or not name.strip():
            skipped.append(
                {
                    "kind": "file",
                    "object": "(unnamed file)",
                    "reason": f"{path}.properties.fileName is missing",
                }
            )
            continue
        directory = properties.get("directory")
        directory = directory.strip() if isinstance(directory, str) else ""
        display = _join(directory, name) if directory else name

        hashes, problem = _hashes(entity, by_id, path)
        if problem:
            skipped.append({"kind": "file", "object": display, "reason": problem})
            continue
        if "SHA256" not in hashes and "SHA1" not in hashes:
            reason = (
                "only an MD5 hash; fetching and checking the file needs SHA-256 "
                "or SHA-1"
                if "MD5" in hashes
                else "no SHA-256 or SHA-1 FileHash entity is linked to the file"
            )
            skipped.append({"kind": "file", "object": display, "reason": reason})
            continue

        host = _host(entity, by_id, hosts)
        host_properties = (host or {}).get("properties") or {}
        device_id = _device_id(
            host_properties.get("additionalData"), properties.get("additionalData")
        )
        host_name = host_properties.get("hostName")
        if not device_id and not isinstance(host_name, str):
            skipped.append(
                {
                    "kind": "file",
                    "object": display,
                    "reason": "no host: the file names no Host entity and carries no "
                    "Defender device id (MdatpDeviceId)",
                }
            )
            continue
        dns_domain = host_properties.get("dnsDomain")
        objects.append(
            {
                "kind": "file",
                "object": display,
                "file_name": name.strip(),
                "directory": directory,
                "sha256": hashes.get("SHA256"),
                "sha1": hashes.get("SHA1"),
                "device_id": device_id,
                "host_name": host_name if isinstance(host_name, str) else None,
                "host_fqdn": f"{host_name}.{dns_domain}"
                if isinstance(host_name, str)
                and isinstance(dns_domain, str)
                and dns_domain
                else None,
                "os_family": os_family(host_properties.get("osFamily")),
            }
        )
    return objects, skipped


def _join(directory: str, name: str) -> str:
    separator = (
        "\\" if ("\\" in directory or re.match(r"^[A-Za-z]:", directory)) else "/"
    )
    return directory.rstrip("\\/") + separator + name


def file_identity(item: dict[str, Any]) -> str:
    """Return the value an object key is derived from: device, hash and path."""
    digest = item.get("sha256") or item.get("sha1")
    device = item.get("device_id") or (item.get("host_name") or "").lower()
    return f"{device}|{digest}|{item.get('object', '').lower()}"
