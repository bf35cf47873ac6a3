"""File entities: hashes, host, Defender device id and OS, from the trigger body.

A `File` entity names its hashes by entity id (`fileHashEntityIds`, resolved
against the `FileHash` entities) and its host by `hostEntityId`. The Defender
device id is `additionalData.MdatpDeviceId` on the Host entity, and on some
File entities too. A file that cannot be fetched (no hash, no host, an
unusable hash value, a name no file system allows) is reported with the
reason, which names the JSON path of the value at fault, instead of being
dropped.
"""

from __future__ import annotations

import re
from typing import Any

from enrichment.urls import shown

HASH_LENGTHS = {"SHA256": 64, "SHA1": 40, "MD5": 32}
# The hashes a file is found and checked by. An MD5 is read but never used.
FETCH_HASHES = ("SHA256", "SHA1")
_HEX = re.compile(r"[0-9a-fA-F]+")
_DEVICE_ID = re.compile(r"[0-9a-fA-F]{40}")

# NTFS and ext4 cap one name at 255 (UTF-16 units on NTFS, bytes on ext4), so
# a longer fileName is taken as garbage.
MAX_FILE_NAME_CHARS = 255
# The Windows extended-length path limit.
MAX_PATH_CHARS = 32_767
MAX_HOST_NAME_CHARS = 255
# How much of a file's path a skip reason repeats.
SHOWN_PATH_CHARS = 600
_SURROGATE = re.compile(r"[\ud800-\udfff]")

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


def entity_kind(entity: dict[str, Any]) -> str:
    """Return the entity's kind in lower case ("url", "file", ...), or ""."""
    kind = entity.get("kind")
    return kind.lower() if isinstance(kind, str) else ""


def _ids(entities: list[dict[str, Any]]) -> dict[str, tuple[int, dict[str, Any]]]:
    """Index the entities by lower-cased id, keeping each one's position."""
    return {
        entity["id"].lower(): (index, entity)
        for index, entity in enumerate(entities)
        if isinstance(entity.get("id"), str)
    }


def _entity_path(index: int) -> str:
    return f"object.properties.relatedEntities[{index}]"


def _hashes(
    file_entity: dict[str, Any],
    by_id: dict[str, tuple[int, dict[str, Any]]],
    path: str,
) -> tuple[dict[str, str], str | None]:
    """Return the file's hashes by algorithm, or the reason they are unusable.

    A malformed or contradictory SHA-256 or SHA-1 makes the file unusable,
    because the file is found and checked by it. A malformed MD5 is ignored
    when a SHA-256 or SHA-1 is present, because MD5 is never used.
    """
    refs = (file_entity.get("properties") or {}).get("fileHashEntityIds")
    if refs is None:
        refs = []
    if not isinstance(refs, list):
        return {}, (
            f"{path}.properties.fileHashEntityIds is not a list; send the ids of "
            "the file's FileHash entities as an array"
        )
    found: dict[str, str] = {}
    problems: dict[str, str] = {}
    for ref in refs:
        if not isinstance(ref, str) or ref.lower() not in by_id:
            continue
        index, entity = by_id[ref.lower()]
        if entity_kind(entity) != "filehash":
            continue
        properties = entity.get("properties") or {}
        algorithm = properties.get("algorithm")
        algorithm = algorithm.upper() if isinstance(algorithm, str) else ""
        if algorithm not in HASH_LENGTHS:
            continue
        value = properties.get("hashValue")
        hash_path = f"{_entity_path(index)}.properties.hashValue"
        if (
            not isinstance(value, str)
            or len(value) != HASH_LENGTHS[algorithm]
            or not _HEX.fullmatch(value)
        ):
            problems.setdefault(
                algorithm,
                f"{hash_path} is not a {algorithm} "
                f"({HASH_LENGTHS[algorithm]} hexadecimal digits)",
            )
            continue
        if found.get(algorithm, value.lower()) != value.lower():
            problems.setdefault(
                algorithm,
                f"{hash_path} is a second, different {algorithm} for the same file",
            )
            continue
        found[algorithm] = value.lower()

    for algorithm in FETCH_HASHES:
        if algorithm in problems:
            return {}, problems[algorithm]
    if not any(algorithm in found for algorithm in FETCH_HASHES) and problems:
        return {}, next(iter(problems.values()))
    return found, None


def _missing_hash_reason(hashes: dict[str, str], path: str) -> str:
    if "MD5" in hashes:
        return "only an MD5 hash; fetching and checking the file needs SHA-256 or SHA-1"
    return (
        "no SHA-256 or SHA-1 FileHash entity is linked to the file; "
        f"list one in {path}.properties.fileHashEntityIds"
    )


def _host(
    file_entity: dict[str, Any],
    by_id: dict[str, tuple[int, dict[str, Any]]],
    hosts: list[tuple[int, dict[str, Any]]],
    path: str,
) -> tuple[tuple[int, dict[str, Any]] | None, str]:
    """Return the file's Host entity with its position, or None and the reason.

    The file's hostEntityId decides. Only a file without one falls back to the
    incident's only Host, because a dangling reference gives no sign that the
    only Host is the right device.
    """
    ref = (file_entity.get("properties") or {}).get("hostEntityId")
    if ref is not None and not isinstance(ref, str):
        return None, f"{path}.properties.hostEntityId is not a string"
    if ref:
        found = by_id.get(ref.lower())
        if found is None or entity_kind(found[1]) != "host":
            # Entity ids are long ARM ids, and the last segment identifies one.
            last = shown(ref.rstrip("/").rsplit("/", 1)[-1], 80)
            return None, (
                f"{path}.properties.hostEntityId (.../{last}) matches no Host "
                "entity in relatedEntities"
            )
        return found, ""
    if len(hosts) == 1:
        return hosts[0], ""
    if not hosts:
        return None, "the incident has no Host entity"
    return None, (
        f"the incident has {len(hosts)} Host entities and "
        f"{path}.properties.hostEntityId does not say which one holds the file"
    )


def _device_id(*bags: Any) -> str | None:
    for bag in bags:
        if isinstance(bag, dict):
            value = bag.get("MdatpDeviceId")
            if isinstance(value, str) and _DEVICE_ID.fullmatch(value):
                return value.lower()
    return None


def _host_name(value: Any) -> str | None:
    """Return a host name that Defender can be searched by, or None."""
    if not isinstance(value, str):
        return None
    name = value.strip()
    if not name or len(name) > MAX_HOST_NAME_CHARS:
        return None
    if "\x00" in name or _SURROGATE.search(name):
        return None
    return name


def _name_problem(name: str, directory: str, path: str) -> str | None:
    """Return why the file's name or directory cannot exist on a host, or None."""
    if len(name) > MAX_FILE_NAME_CHARS:
        return (
            f"{path}.properties.fileName is {len(name)} characters; file names on "
            f"NTFS and ext4 are at most {MAX_FILE_NAME_CHARS}"
        )
    if len(directory) + len(name) > MAX_PATH_CHARS:
        return (
            f"{path}.properties.directory is {len(directory)} characters; "
            f"Windows paths are at most {MAX_PATH_CHARS}"
        )
    for field, text in (("fileName", name), ("directory", directory)):
        if "\x00" in text:
            return f"{path}.properties.{field} contains a NUL character"
        if _SURROGATE.search(text):
            return (
                f"{path}.properties.{field} contains an unpaired UTF-16 surrogate "
                "(invalid text)"
            )
    return None


def _file_object(
    entity: dict[str, Any],
    index: int,
    by_id: dict[str, tuple[int, dict[str, Any]]],
    hosts: list[tuple[int, dict[str, Any]]],
) -> tuple[dict[str, Any], str | None]:
    """Read one File entity and return its object, or its display and skip reason."""
    path = _entity_path(index)
    properties = entity.get("properties") or {}
    name = properties.get("fileName")
    if not isinstance(name, str) or not name.strip():
        problem = "missing" if name is None else "not a non-empty string"
        return {"object": "(unnamed file)"}, (
            f"{path}.properties.fileName is {problem}; the file cannot be located "
            "without its name"
        )
    name = name.strip()
    directory = properties.get("directory")
    # A directory of the wrong type is treated as unknown: advanced hunting
    # finds the path from the hash.
    directory = directory.strip() if isinstance(directory, str) else ""
    display = _join(directory, name) if directory else name
    shown_display = shown(display, SHOWN_PATH_CHARS)
    problem = _name_problem(name, directory, path)
    if problem:
        return {"object": shown_display}, problem

    hashes, problem = _hashes(entity, by_id, path)
    if problem:
        return {"object": shown_display}, problem
    if not any(algorithm in hashes for algorithm in FETCH_HASHES):
        return {"object": shown_display}, _missing_hash_reason(hashes, path)

    host, host_problem = _host(entity, by_id, hosts, path)
    host_properties = (host[1] if host else {}).get("properties") or {}
    device_id = _device_id(
        host_properties.get("additionalData"), properties.get("additionalData")
    )
    host_name = _host_name(host_properties.get("hostName"))
    if not device_id and not host_name:
        if not host_problem:
            host_problem = (
                f"its Host entity {_entity_path(host[0])} has no usable hostName "
                "and no Defender device id (additionalData.MdatpDeviceId, 40 "
                "hexadecimal digits)"
            )
        return {"object": shown_display}, f"no host: {host_problem}"
    dns_domain = _host_name(host_properties.get("dnsDomain"))
    return {
        "kind": "file",
        "object": display,
        "file_name": name,
        "directory": directory,
        "sha256": hashes.get("SHA256"),
        "sha1": hashes.get("SHA1"),
        "device_id": device_id,
        "host_name": host_name,
        "host_fqdn": f"{host_name}.{dns_domain}" if host_name and dns_domain else None,
        "os_family": os_family(host_properties.get("osFamily")),
    }, None


def extract_files(entities: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """Return (file objects, skipped files) from the incident's entities."""
    by_id = _ids(entities)
    hosts = [
        (index, entity)
        for index, entity in enumerate(entities)
        if entity_kind(entity) == "host"
    ]
    objects: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for index, entity in enumerate(entities):
        if entity_kind(entity) != "file":
            continue
        item, reason = _file_object(entity, index, by_id, hosts)
        if reason:
            skipped.append({"kind": "file", "object": item["object"], "reason": reason})
        else:
            objects.append(item)
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
