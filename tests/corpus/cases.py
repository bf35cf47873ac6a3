"""Bad-input corpus for the incident webhook (`POST /api/incidents`).

Each case is one request body with the outcome the webhook must produce. For
a 4xx that is the HTTP status and the `field` of the JSON error. For an
accepted body it is the analysable objects, the skipped objects with a
fragment of their reason, and the number of Defender alerts. Every case uses
its own incident name, so accepted cases never share an instance id.

The trigger bodies are built here rather than read from samples/incidents/,
so the expectations do not move when a sample changes.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from function_app import MAX_BODY_BYTES

# The connector's default MAX_OBJECTS_PER_INCIDENT, which devhost also runs with.
MAX_OBJECTS = 20
JSON = "application/json"

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000c1"
WORKSPACE_ID = "00000000-0000-0000-0000-0000000000c2"
WORKSPACE = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-corpus/providers/"
    "Microsoft.OperationalInsights/workspaces/law-corpus"
)
NAMESPACE = uuid.UUID("6f1f3c52-3a38-4b8e-9d55-0c0e7d6a2b10")

DEVICE_ID = "4f2a9c1b7d3e5f60718293a4b5c6d7e8f9012345"
SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SHA1 = "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"
MD5 = "098f6bcd4621d373cade4e832627b4f6"
WINDOWS_DIR = "C:\\Users\\analyst\\Downloads"
WINDOWS_FILE = f"{WINDOWS_DIR}\\invoice.exe"
# With Python's default recursion limit of 1000, json.loads raises
# RecursionError somewhat below 1000 levels, so this is far past it.
TOO_DEEP = 100_000


@dataclass(frozen=True)
class Case:
    """One webhook request and the outcome it must produce.

    `body` is the decoded JSON. `is_json` is False when the payload does not
    decode, so the validator never receives it. `skipped` pairs each skipped
    object with a fragment its reason must contain. `attributes` are
    (object, key, value) checks on analysable objects. `pending` names a
    webhook change the case needs; until it is made, the webhook tests expect
    the case to fail.
    """

    name: str
    payload: bytes
    body: Any = None
    is_json: bool = True
    content_type: str | None = JSON
    status: int = 202
    field: str | None = None
    message: str | None = None
    objects: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    alerts: int = 0
    attributes: tuple[tuple[str, str, Any], ...] = ()
    pending: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status == 202

    def __repr__(self) -> str:
        return f"Case({self.name})"


# -- trigger bodies -------------------------------------------------------


def incident_name(case_name: str) -> str:
    """Return the incident name (a GUID) that belongs to one case."""
    return str(uuid.uuid5(NAMESPACE, case_name))


def entity_id(label: str) -> str:
    guid = uuid.uuid5(NAMESPACE, f"entity:{label}")
    return f"{WORKSPACE}/providers/Microsoft.SecurityInsights/Entities/{guid}"


def entity(label: str, kind: str, **properties: Any) -> dict[str, Any]:
    return {
        "id": entity_id(label),
        "name": label,
        "type": "Microsoft.SecurityInsights/Entities",
        "kind": kind,
        "properties": properties,
    }


def url_entity(label: str, url: Any) -> dict[str, Any]:
    return entity(label, "Url", url=url, friendlyName=str(url)[:100])


def host_entity(
    label: str = "host",
    host_name: Any = "ws-0042",
    device_id: Any = DEVICE_ID,
    os_family: Any = "Windows",
) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "hostName": host_name,
        "dnsDomain": "corp.example.com",
        "osFamily": os_family,
    }
    if device_id is not None:
        properties["additionalData"] = {"MdatpDeviceId": device_id}
    return entity(label, "Host", **properties)


def hash_entity(label: str, algorithm: Any, value: Any) -> dict[str, Any]:
    return entity(label, "FileHash", algorithm=algorithm, hashValue=value)


def file_entity(
    label: str = "file",
    file_name: Any = "invoice.exe",
    directory: Any = WINDOWS_DIR,
    hashes: Any = ("sha256",),
    host: Any = "host",
) -> dict[str, Any]:
    properties: dict[str, Any] = {"fileName": file_name, "directory": directory}
    if hashes is not None:
        properties["fileHashEntityIds"] = (
            [entity_id(label) for label in hashes]
            if isinstance(hashes, tuple)
            else hashes
        )
    if host is not None:
        properties["hostEntityId"] = entity_id(host)
    return entity(label, "File", **properties)


def windows_file(**file_options: Any) -> list[dict[str, Any]]:
    """Return a Host, a File on it and the file's SHA-256 and SHA-1 entities."""
    return [
        host_entity(),
        file_entity(hashes=("sha256", "sha1"), **file_options),
        hash_entity("sha256", "SHA256", SHA256),
        hash_entity("sha1", "SHA1", SHA1),
    ]


def trigger(case_name: str, entities: Any = (), **properties: Any) -> dict:
    """Return an incident trigger body for one case."""
    name = incident_name(case_name)
    incident_properties = {
        "title": f"Corpus case {case_name}",
        "severity": "Medium",
        "status": "New",
        "incidentNumber": 7000,
        "incidentUrl": f"https://portal.azure.com/#asset/Incident{WORKSPACE}/{name}",
        "labels": [],
        "alerts": [],
        "relatedEntities": list(entities)
        if isinstance(entities, tuple | list)
        else entities,
    }
    incident_properties.update(properties)
    return {
        "eventUniqueId": str(uuid.uuid5(NAMESPACE, f"event:{case_name}")),
        "objectSchemaType": "Incident",
        "objectEventType": "Create",
        "workspaceInfo": {
            "SubscriptionId": SUBSCRIPTION,
            "ResourceGroupName": "rg-corpus",
            "WorkspaceName": "law-corpus",
        },
        "workspaceId": WORKSPACE_ID,
        "object": {
            "id": f"{WORKSPACE}/providers/Microsoft.SecurityInsights/Incidents/{name}",
            "name": name,
            "type": "Microsoft.SecurityInsights/Incidents",
            "properties": incident_properties,
        },
    }


def changed(body: dict, path: str, value: Any = KeyError) -> dict:
    """Return a copy of body with the value at a dotted path replaced or deleted."""
    result = copy.deepcopy(body)
    *parents, last = path.split(".")
    target: Any = result
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is KeyError:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return result


def nested(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


# -- case builders ----------------------------------------------------------

CASES: list[Case] = []


def add(
    name: str,
    body: Any,
    *,
    objects: tuple[str, ...] = (),
    skipped: tuple[tuple[str, str], ...] = (),
    **outcome: Any,
) -> None:
    """Add a case whose payload is `body` encoded as JSON."""
    payload = json.dumps(body).encode()
    CASES.append(
        Case(name, payload, body=body, objects=objects, skipped=skipped, **outcome)
    )


def add_raw(name: str, payload: bytes, **outcome: Any) -> None:
    """Add a case whose payload is raw bytes that are not valid JSON."""
    CASES.append(Case(name, payload, is_json=False, **outcome))


def reject(name: str, body: Any, field_path: str, **outcome: Any) -> None:
    add(name, body, status=400, field=field_path, **outcome)


def _build_transport_cases() -> None:
    """The request itself is wrong: content type, size, encoding, JSON syntax."""
    valid = trigger("json-utf8-bom", [url_entity("u", "https://a.example/")])
    add_raw("json-malformed", b'{"object": {"id": ', status=400, field="$")
    add_raw("json-empty-body", b"", status=400, field="$")
    add_raw("json-not-utf8", b'{"object": "\xff\xfe"}', status=400, field="$")
    add_raw(
        "json-utf8-bom",
        b"\xef\xbb\xbf" + json.dumps(valid).encode(),
        status=400,
        field="$",
    )
    add_raw("json-trailing-garbage", b'{"object": {}} }', status=400, field="$")
    add_raw(
        "json-integer-5000-digits",
        b'{"object": {"properties": {"incidentNumber": ' + b"7" * 5000 + b"}}}",
        status=400,
        field="$",
    )
    add_raw(
        "json-nested-too-deep",
        b"[" * TOO_DEEP + b"]" * TOO_DEEP,
        status=400,
        field="$",
    )
    for name, content_type in (
        ("content-type-text-plain", "text/plain"),
        ("content-type-form", "application/x-www-form-urlencoded"),
        ("content-type-missing", None),
    ):
        add(
            name,
            trigger(name, [url_entity("u", "https://a.example/")]),
            content_type=content_type,
            status=415,
            field="Content-Type",
            objects=("https://a.example/",),
        )
    add(
        "content-type-json-charset",
        trigger("content-type-json-charset", [url_entity("u", "https://a.example/")]),
        content_type="application/json; charset=utf-8",
        objects=("https://a.example/",),
    )
    padding = "p" * (MAX_BODY_BYTES + 1)
    add(
        "body-over-4-mib",
        trigger("body-over-4-mib", description=padding),
        status=413,
        field="$",
    )


def _build_shape_cases() -> None:
    """Not a JSON object, the wrong trigger, the wrong wrapper."""
    for name, value in (
        ("top-level-array", []),
        ("top-level-string", "incident"),
        ("top-level-number", 42),
        ("top-level-boolean", True),
    ):
        reject(name, value, "$", message="expected a JSON object")
    reject("top-level-null", None, "$", message="expected a JSON object")

    url = url_entity("u", "https://wrapped.example/login")
    add(
        "wrapper-body",
        {"Body": trigger("wrapper-body", [url])},
        objects=("https://wrapped.example/login",),
    )
    add(
        "wrapper-body-lower-case",
        {"body": trigger("wrapper-body-lower-case", [url])},
        objects=("https://wrapped.example/login",),
    )
    reject(
        "wrapper-body-as-string",
        {"Body": json.dumps(trigger("wrapper-body-as-string"))},
        "Body",
        message="not a string or array",
    )
    reject(
        "wrapper-body-twice",
        {"Body": {"Body": trigger("wrapper-body-twice", [url])}},
        "Body.Body",
        message="wrapped twice",
    )
    reject(
        "wrapper-body-invalid-inside",
        {"Body": changed(trigger("wrapper-body-invalid-inside"), "object.id")},
        "Body.object.id",
    )
    reject(
        "wrapper-entity-error-path",
        {
            "Body": trigger(
                "wrapper-entity-error-path",
                [url, url, url, {"properties": {}}],
            )
        },
        "Body.object.properties.relatedEntities[3].kind",
    )
    alert_trigger = {
        "SystemAlertId": "1c4b2f0e-0000-4000-8000-000000000001",
        "AlertDisplayName": "Suspicious download",
        "ProductName": "Azure Sentinel",
        "Entities": [
            {"$id": "2", "Type": "url", "Url": "https://alert.example/x"},
            {"$id": "3", "Type": "host", "HostName": "ws-0042"},
        ],
    }
    reject("alert-trigger-body", alert_trigger, "object", message="alert-trigger")
    reject(
        "alert-trigger-wrapped",
        {"Body": alert_trigger},
        "Body.object",
        message="alert-trigger",
    )
    reject(
        "schema-type-alert",
        changed(trigger("schema-type-alert"), "objectSchemaType", "Alert"),
        "objectSchemaType",
    )
    reject(
        "schema-type-number",
        changed(trigger("schema-type-number"), "objectSchemaType", 1),
        "objectSchemaType",
    )


def _build_incident_field_cases() -> None:
    """Missing values and wrong types in the incident fields the validator reads."""
    for name, path, value, field_path in (
        ("object-missing", "object", KeyError, "object"),
        ("object-null", "object", None, "object"),
        ("object-array", "object", [], "object"),
        ("object-id-missing", "object.id", KeyError, "object.id"),
        ("object-id-number", "object.id", 12, "object.id"),
        ("object-id-not-incident", "object.id", "/subscriptions/x/incidents/1", None),
        ("object-id-trailing-newline", "object.id", "NEWLINE", "object.id"),
        ("object-id-name-too-long", "object.id", "LONG", "object.id"),
        ("properties-missing", "object.properties", KeyError, "object.properties"),
        ("properties-string", "object.properties", "{}", "object.properties"),
        ("workspace-id-missing", "workspaceId", KeyError, "workspaceId"),
        ("workspace-id-number", "workspaceId", 2, "workspaceId"),
        ("workspace-id-not-guid", "workspaceId", "law-corpus", "workspaceId"),
        ("workspace-id-newline", "workspaceId", WORKSPACE_ID + "\n", "workspaceId"),
        (
            "incident-number-string",
            "object.properties.incidentNumber",
            "7000",
            "object.properties.incidentNumber",
        ),
        (
            "incident-number-negative",
            "object.properties.incidentNumber",
            -1,
            "object.properties.incidentNumber",
        ),
        (
            "incident-number-boolean",
            "object.properties.incidentNumber",
            True,
            "object.properties.incidentNumber",
        ),
        (
            "incident-number-fraction",
            "object.properties.incidentNumber",
            7000.5,
            "object.properties.incidentNumber",
        ),
        (
            "incident-number-past-int64",
            "object.properties.incidentNumber",
            2**64,
            "object.properties.incidentNumber",
        ),
        (
            "title-number",
            "object.properties.title",
            3,
            "object.properties.title",
        ),
        (
            "related-entities-object",
            "object.properties.relatedEntities",
            {},
            "object.properties.relatedEntities",
        ),
        (
            "related-entities-string",
            "object.properties.relatedEntities",
            "[]",
            "object.properties.relatedEntities",
        ),
    ):
        body = trigger(name)
        incident_id = body["object"]["id"]
        if value == "NEWLINE":
            value = incident_id + "\n"
        elif value == "LONG":
            value = incident_id.rsplit("/", 1)[0] + "/" + "a" * 65
        reject(name, changed(body, path, value), field_path or "object.id")

    too_many = [{"kind": "Ip", "properties": {}}] * 10_001
    reject(
        "related-entities-over-10000",
        trigger("related-entities-over-10000", too_many),
        "object.properties.relatedEntities",
    )


def _build_entity_cases() -> None:
    """Malformed entities: these reject the body, naming the entity's path."""
    first = "object.properties.relatedEntities[0]"
    for name, bad, field_path in (
        ("entity-string", "Url", first),
        ("entity-null", None, first),
        ("entity-kind-missing", {"properties": {}}, f"{first}.kind"),
        ("entity-kind-number", {"kind": 7, "properties": {}}, f"{first}.kind"),
        ("entity-kind-empty", {"kind": "", "properties": {}}, f"{first}.kind"),
        (
            "entity-properties-array",
            {"kind": "Host", "properties": []},
            f"{first}.properties",
        ),
        (
            "entity-properties-null",
            {"kind": "Host", "properties": None},
            f"{first}.properties",
        ),
        ("url-entity-url-missing", {"kind": "Url", "properties": {}}, None),
        ("url-entity-url-number", {"kind": "Url", "properties": {"url": 80}}, None),
        ("url-entity-url-null", {"kind": "Url", "properties": {"url": None}}, None),
    ):
        reject(name, trigger(name, [bad]), field_path or f"{first}.properties.url")
    reject(
        "url-entity-pascal-case-url",
        trigger(
            "url-entity-pascal-case-url",
            [{"kind": "Url", "properties": {"Url": "https://a.example/"}}],
        ),
        f"{first}.properties.url",
        message="alert-trigger spelling",
    )


def _build_accepted_shape_cases() -> None:
    """Unusual but valid bodies: empty, big, optional fields absent or odd."""
    add("related-entities-empty", trigger("related-entities-empty", []))
    add(
        "related-entities-absent",
        changed(
            trigger("related-entities-absent"), "object.properties.relatedEntities"
        ),
    )
    add(
        "related-entities-null",
        trigger("related-entities-null", None),
    )
    urls = [f"https://host{n:03d}.example/path" for n in range(500)]
    add(
        "entities-500-urls",
        trigger(
            "entities-500-urls",
            [url_entity(f"u{n}", url) for n, url in enumerate(urls)],
        ),
        objects=tuple(urls[:MAX_OBJECTS]),
        skipped=tuple((url, "MAX_OBJECTS_PER_INCIDENT") for url in urls[MAX_OBJECTS:]),
    )
    # Microsoft Sentinel's service limits cap an alert's entities at 64 KB in
    # all. An incident gathers several alerts, so the webhook must take more.
    accounts = [
        entity(
            f"account{n}",
            "Account",
            accountName=f"user{n}",
            additionalData={"notes": "n" * 1000},
        )
        for n in range(80)
    ]
    add(
        "entities-past-64-kib",
        trigger(
            "entities-past-64-kib",
            [*accounts, url_entity("u", "https://big.example/")],
        ),
        objects=("https://big.example/",),
    )
    add(
        "incident-number-absent",
        changed(trigger("incident-number-absent"), "object.properties.incidentNumber"),
    )
    add(
        "workspace-id-upper-case",
        changed(
            trigger("workspace-id-upper-case"), "workspaceId", WORKSPACE_ID.upper()
        ),
    )
    add(
        "title-one-mib",
        trigger("title-one-mib", title="t" * 2**20),
    )
    add(
        "incident-url-wrong-type",
        trigger("incident-url-wrong-type", incidentUrl={"href": 1}),
    )
    add(
        "incident-url-one-mib",
        trigger("incident-url-one-mib", incidentUrl="https://p.example/" + "u" * 2**20),
    )
    add(
        "nested-garbage-in-entity",
        trigger(
            "nested-garbage-in-entity",
            [
                entity("acct", "Account", additionalData=nested(300)),
                url_entity("u", "https://nested.example/"),
            ],
        ),
        objects=("https://nested.example/",),
    )
    add(
        "unknown-kinds-ignored",
        trigger(
            "unknown-kinds-ignored",
            [
                entity("ip", "Ip", address="198.51.100.7"),
                entity("mail", "MailMessage", recipient="analyst@example.com"),
                entity("odd", "NotAKind", value=1),
            ],
        ),
    )
    add(
        "entity-kind-lower-case",
        trigger(
            "entity-kind-lower-case",
            [
                {"kind": "url", "properties": {"url": "https://lower.example/"}},
                {**url_entity("u2", "https://upper.example/"), "kind": "URL"},
            ],
        ),
        objects=("https://lower.example/", "https://upper.example/"),
    )


def _build_url_cases() -> None:
    """URL entities the sandbox must not or cannot open, and ones to normalise."""

    def urls(name: str, *values: Any, **outcome: Any) -> None:
        entities = [url_entity(f"u{n}", value) for n, value in enumerate(values)]
        add(name, trigger(name, entities), **outcome)

    urls(
        "url-idn-host",
        "https://bücher.example/kaufen",
        objects=("https://xn--bcher-kva.example/kaufen",),
    )
    urls(
        "url-idn-sharp-s",
        "http://faß.de/login",
        objects=("http://xn--fa-hia.de/login",),
    )
    urls(
        "url-idn-ideographic-dot",
        "https://例え。テスト/",
        objects=("https://xn--r8jz45g.xn--zckzah/",),
    )
    urls(
        "url-unicode-path",
        "https://example.com/путь?q=данные",
        objects=("https://example.com/путь?q=данные",),
    )
    urls(
        "url-emoji-host",
        "https://💩.example/",
        skipped=(("https://💩.example/", "host is invalid"),),
    )
    urls(
        "url-space-in-host",
        "http://exa mple.com/",
        skipped=(("http://exa mple.com/", "host is invalid"),),
    )
    urls(
        "url-unicode-digits-host",
        "http://١٢٣/",
        skipped=(("http://١٢٣/", "host is invalid"),),
    )
    urls(
        "url-defanged",
        "hxxps://evil[.]example[.]net/login",
        "http[:]//files[.]example[.]net/x.zip",
        "hxxp://bad(.)example(.)org",
        "HXXPS://caps[dot]example[.]com/A",
        objects=(
            "https://evil.example.net/login",
            "http://files.example.net/x.zip",
            "http://bad.example.org/",
            "https://caps.example.com/A",
        ),
    )
    for scheme, value in (
        ("javascript", "javascript:alert(document.cookie)"),
        ("file", "file:///etc/passwd"),
        ("ftp", "ftp://files.example.net/pub/invoice.zip"),
        ("data", "data:text/html;base64,PHNjcmlwdD4="),
    ):
        urls(
            f"url-scheme-{scheme}",
            value,
            "https://ok.example/",
            objects=("https://ok.example/",),
            skipped=((value, f"scheme '{scheme}' is not analysed"),),
        )
    fits = "https://long.example/" + "a" * (512 - len("https://long.example/"))
    urls("url-512-characters", fits, objects=(fits,))
    urls(
        "url-513-characters",
        fits + "b",
        skipped=((fits + "b", "the sandbox accepts 512"),),
    )
    huge = "https://huge.example/" + "h" * 2**20
    urls(
        "url-one-mib",
        huge,
        skipped=((huge[:600], "the sandbox accepts 512"),),
    )
    urls(
        "url-control-characters",
        "https://a.example/\r\nSet-Cookie: x",
        skipped=(("https://a.example/\r\nSet-Cookie: x", "control characters"),),
    )
    urls(
        "url-unpaired-surrogate",
        "https://a.example/\ud800",
        skipped=(("https://a.example/\ufffd", "unpaired UTF-16 surrogate"),),
    )
    urls("url-empty", "", skipped=(("", "empty"),))
    urls(
        "url-no-scheme",
        "www.example.com/x",
        skipped=(("www.example.com/x", "no scheme"),),
    )
    urls(
        "url-port-out-of-range",
        "https://a.example:99999/",
        skipped=(("https://a.example:99999/", "host is invalid"),),
    )
    urls(
        "url-duplicates",
        "https://dup.example/a",
        "HTTPS://DUP.EXAMPLE/a",
        "hxxps://dup[.]example/a#fragment",
        "https://dup.example:443/a",
        objects=("https://dup.example/a",),
    )


def _build_file_cases() -> None:
    """File entities: hashes, hosts and names. A problem skips the file only."""

    def files(name: str, entities: list[dict[str, Any]], **outcome: Any) -> None:
        add(name, trigger(name, entities), **outcome)

    def edited(index: int, **properties: Any) -> list[dict[str, Any]]:
        entities = windows_file()
        entities[index]["properties"].update(properties)
        return entities

    files(
        "file-valid",
        windows_file(),
        objects=(WINDOWS_FILE,),
        attributes=(
            (WINDOWS_FILE, "device_id", DEVICE_ID),
            (WINDOWS_FILE, "sha256", SHA256),
            (WINDOWS_FILE, "os_family", "windows"),
        ),
    )
    files(
        "file-duplicate-entities",
        [*windows_file(), file_entity("file2", hashes=("sha256", "sha1"))],
        objects=(WINDOWS_FILE,),
    )
    files(
        "file-no-hash",
        [host_entity(), file_entity(hashes=None)],
        skipped=((WINDOWS_FILE, "no SHA-256 or SHA-1"),),
    )
    files(
        "file-hash-ids-dangling",
        [host_entity(), file_entity(hashes=("gone",))],
        skipped=((WINDOWS_FILE, "no SHA-256 or SHA-1"),),
    )
    files(
        "file-md5-only",
        [host_entity(), file_entity(hashes=("md5",)), hash_entity("md5", "MD5", MD5)],
        skipped=((WINDOWS_FILE, "only an MD5"),),
    )
    files(
        "file-sha256-wrong-length",
        edited(2, hashValue=SHA256[:-1]),
        skipped=(
            (WINDOWS_FILE, "relatedEntities[2].properties.hashValue is not a SHA256"),
        ),
    )
    files(
        "file-sha256-wrong-alphabet",
        edited(2, hashValue="z" * 64),
        skipped=((WINDOWS_FILE, "is not a SHA256 (64 hexadecimal digits)"),),
    )
    files(
        "file-sha256-trailing-newline",
        edited(2, hashValue=SHA256[:-1] + "\n"),
        skipped=((WINDOWS_FILE, "is not a SHA256"),),
    )
    files(
        "file-device-id-trailing-newline",
        [host_entity(device_id=DEVICE_ID[:-1] + "\n"), *windows_file()[1:]],
        objects=(WINDOWS_FILE,),
        attributes=((WINDOWS_FILE, "device_id", None),),
    )
    files(
        "file-sha1-number",
        edited(3, hashValue=12345),
        skipped=((WINDOWS_FILE, "is not a SHA1 (40 hexadecimal digits)"),),
    )
    files(
        "file-sha256-conflicting",
        _with_extra_hash(),
        skipped=((WINDOWS_FILE, "second, different SHA256"),),
    )
    files(
        "file-bad-md5-beside-sha256",
        [
            host_entity(),
            file_entity(hashes=("sha256", "md5")),
            hash_entity("sha256", "SHA256", SHA256),
            hash_entity("md5", "MD5", "not-an-md5"),
        ],
        objects=(WINDOWS_FILE,),
    )
    files(
        "file-hash-algorithm-number",
        [host_entity(), file_entity(), hash_entity("sha256", 256, SHA256)],
        skipped=((WINDOWS_FILE, "no SHA-256 or SHA-1"),),
    )
    files(
        "file-hash-ids-string",
        edited(1, fileHashEntityIds=entity_id("sha256")),
        skipped=((WINDOWS_FILE, "fileHashEntityIds is not a list"),),
    )
    files(
        "file-hash-ids-wrong-items",
        edited(1, fileHashEntityIds=[None, 5, {"id": 1}, entity_id("sha256")]),
        objects=(WINDOWS_FILE,),
    )
    files(
        "file-host-without-device-id",
        [host_entity(device_id=None), *windows_file()[1:]],
        objects=(WINDOWS_FILE,),
        attributes=(
            (WINDOWS_FILE, "device_id", None),
            (WINDOWS_FILE, "host_name", "ws-0042"),
            (WINDOWS_FILE, "host_fqdn", "ws-0042.corp.example.com"),
        ),
    )
    files(
        "file-host-device-id-malformed",
        [host_entity(device_id="not-a-device"), *windows_file()[1:]],
        objects=(WINDOWS_FILE,),
        attributes=((WINDOWS_FILE, "device_id", None),),
    )
    files(
        "file-host-not-found",
        [host_entity("other", host_name="ws-0099"), *windows_file()[1:]],
        skipped=((WINDOWS_FILE, "matches no Host entity"),),
    )
    files(
        "file-host-not-found-device-on-file",
        [
            host_entity("other", host_name="ws-0099"),
            *edited(1, additionalData={"MdatpDeviceId": DEVICE_ID})[1:],
        ],
        objects=(WINDOWS_FILE,),
        attributes=((WINDOWS_FILE, "device_id", DEVICE_ID),),
    )
    files(
        "file-host-id-names-a-hash",
        edited(1, hostEntityId=entity_id("sha256")),
        skipped=((WINDOWS_FILE, "matches no Host entity"),),
    )
    files(
        "file-host-id-number",
        edited(1, hostEntityId=42),
        skipped=((WINDOWS_FILE, "hostEntityId is not a string"),),
    )
    files(
        "file-no-host-entity",
        windows_file(host=None)[1:],
        skipped=((WINDOWS_FILE, "the incident has no Host entity"),),
    )
    files(
        "file-two-hosts-no-host-id",
        [host_entity("h2", host_name="ws-0099"), *edited(1, hostEntityId=None)],
        skipped=((WINDOWS_FILE, "2 Host entities"),),
    )
    files(
        "file-host-name-number-no-device",
        [host_entity(host_name=7, device_id=None), *windows_file()[1:]],
        skipped=((WINDOWS_FILE, "no usable hostName"),),
    )
    files(
        "file-host-name-number-with-device",
        [host_entity(host_name=7), *windows_file()[1:]],
        objects=(WINDOWS_FILE,),
        attributes=((WINDOWS_FILE, "host_name", None),),
    )
    files(
        "file-os-family-number",
        [host_entity(os_family=10), *windows_file()[1:]],
        objects=(WINDOWS_FILE,),
        attributes=((WINDOWS_FILE, "os_family", None),),
    )
    files(
        "file-dns-domain-number",
        [
            {
                **host_entity(),
                "properties": {**host_entity()["properties"], "dnsDomain": 5},
            },
            *windows_file()[1:],
        ],
        objects=(WINDOWS_FILE,),
        attributes=((WINDOWS_FILE, "host_fqdn", None),),
    )
    files(
        "file-hash-entity-id-number",
        [*windows_file()[:2], {**hash_entity("sha256", "SHA256", SHA256), "id": 12}],
        skipped=((WINDOWS_FILE, "no SHA-256 or SHA-1"),),
    )
    files(
        "file-additional-data-string",
        [
            {
                **host_entity(),
                "properties": {"hostName": "ws-0042", "additionalData": "x"},
            },
            *windows_file()[1:],
        ],
        objects=(WINDOWS_FILE,),
        attributes=((WINDOWS_FILE, "device_id", None),),
    )
    files(
        "file-name-missing",
        edited(1, fileName=None),
        skipped=(("(unnamed file)", "fileName is missing"),),
    )
    files(
        "file-name-number",
        edited(1, fileName=5),
        skipped=(("(unnamed file)", "fileName is not a non-empty string"),),
    )
    long_name = "n" * 300 + ".exe"
    files(
        "file-name-300-characters",
        edited(1, fileName=long_name),
        skipped=((f"{WINDOWS_DIR}\\{long_name}", "are at most 255"),),
    )
    files(
        "file-name-nul",
        edited(1, fileName="in\x00voice.exe"),
        skipped=((f"{WINDOWS_DIR}\\in\ufffdvoice.exe", "fileName contains a NUL"),),
    )
    files(
        "file-name-unpaired-surrogate",
        edited(1, fileName="in\udc80voice.exe"),
        skipped=(
            (f"{WINDOWS_DIR}\\in\ufffdvoice.exe", "fileName contains an unpaired"),
        ),
    )
    files(
        "file-directory-number",
        edited(1, directory=3),
        objects=("invoice.exe",),
        attributes=(("invoice.exe", "directory", ""),),
    )
    files(
        "file-directory-one-mib",
        edited(1, directory="C:\\" + "d" * 2**20),
        skipped=(("C:\\" + "d" * 597, "Windows paths are at most 32767"),),
    )


def _with_extra_hash() -> list[dict[str, Any]]:
    """Return a file listing two different SHA-256 values."""
    entities = windows_file()
    entities[1]["properties"]["fileHashEntityIds"].append(entity_id("sha256b"))
    return [*entities, hash_entity("sha256b", "SHA256", "0" * 64)]


def _build_alert_cases() -> None:
    """Defender alerts: only well-formed Defender for Endpoint alerts are kept."""

    def alert(alert_id: Any, product: Any = "Microsoft Defender for Endpoint") -> dict:
        return {
            "properties": {
                "providerAlertId": alert_id,
                "productName": product,
                "alertDisplayName": "Suspicious file",
                "compromisedEntity": "ws-0042",
            }
        }

    add(
        "alerts-defender",
        trigger(
            "alerts-defender",
            alerts=[
                alert("da637472900382838869_1364969609"),
                alert("da1", product="Microsoft Defender for Office 365"),
            ],
        ),
        alerts=1,
    )
    add(
        "alerts-wrong-types",
        trigger(
            "alerts-wrong-types",
            alerts=[
                "x",
                None,
                {"properties": []},
                alert(17),
                alert("da2", product=["Endpoint"]),
                {"properties": {**alert("da3")["properties"], "alertDisplayName": 4}},
                {"properties": {**alert("da4")["properties"], "compromisedEntity": 4}},
            ],
        ),
        alerts=2,
    )
    add("alerts-not-a-list", trigger("alerts-not-a-list", alerts="none"))
    add(
        "alerts-id-path-traversal",
        trigger("alerts-id-path-traversal", alerts=[alert("../machines/x")]),
    )


def build() -> list[Case]:
    if not CASES:
        builders: list[Callable[[], None]] = [
            _build_transport_cases,
            _build_shape_cases,
            _build_incident_field_cases,
            _build_entity_cases,
            _build_accepted_shape_cases,
            _build_url_cases,
            _build_file_cases,
            _build_alert_cases,
        ]
        for builder in builders:
            builder()
        names = [case.name for case in CASES]
        duplicates = {name for name in names if names.count(name) > 1}
        assert not duplicates, f"duplicate case names: {sorted(duplicates)}"
    return CASES
