"""Verdict profiles: what an emulated analysis finds for a URL or a file.

Known objects come from catalogue.json. Any other URL or file gets a profile
derived from a SHA-256 of the URL or of the file's SHA-256, so its verdict is the
same in every run. About 85 % of such URLs are clean and 15 % suspicious. Of such
files, about 85 % are clean, 10 % suspicious and 5 % malicious. All hostnames
and addresses in profiles are reserved for documentation (example.com/.net/.org,
192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, AS64496-AS64511).
"""

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

CATALOGUE_PATH = Path(__file__).with_name("catalogue.json")

VERDICT_TEXTS = {
    0: "No threats detected",
    1: "Suspicious activity",
    2: "Malicious activity",
}


@dataclass(frozen=True)
class Technique:
    id: str
    name: str
    phases: tuple[str, ...]


@dataclass(frozen=True)
class Host:
    """A host that the analysed object contacted; ``domain`` is None for a bare IP."""

    domain: str | None
    ip: str
    port: int
    country: str
    asn: str
    domain_reputation: int
    ip_reputation: int


@dataclass(frozen=True)
class HttpRequest:
    url: str
    method: str
    status: int
    content_type: str
    reputation: int


@dataclass(frozen=True)
class DroppedFile:
    path: str
    type: str
    mime: str
    size: int
    md5: str
    sha1: str
    sha256: str
    reputation: int


@dataclass(frozen=True)
class ChildProcess:
    image: str
    command_line: str
    threat_level: int


@dataclass(frozen=True)
class NetworkThreat:
    """A Suricata alert on traffic to ``host``."""

    message: str
    classification: str
    host: str


@dataclass(frozen=True)
class Behavior:
    """A behaviour the sandbox flagged, with the ids of its MITRE techniques."""

    title: str
    threat_level: int
    mitre: tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    """Everything an analysis of one object finds.

    Reputations use the IOC scale: 0 unknown, 1 suspicious, 2 malicious.
    ``fail_after_seconds`` makes the task fail (status -1) after that many
    emulated seconds, or at its end if that comes first.
    """

    threat_level: int
    score: int
    tags: tuple[str, ...]
    mitre: tuple[Technique, ...]
    main_reputation: int
    hosts: tuple[Host, ...]
    http: tuple[HttpRequest, ...]
    files: tuple[DroppedFile, ...]
    processes: tuple[ChildProcess, ...]
    threats: tuple[NetworkThreat, ...]
    behaviors: tuple[Behavior, ...]
    fail_after_seconds: int | None = None
    source: str = "catalogue"

    @property
    def verdict_text(self) -> str:
        return VERDICT_TEXTS[self.threat_level]


def normalize_url(url: str) -> str:
    """Lower-case the scheme and host and give an empty path a /, so lookups match."""
    text = url.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if not parts.scheme or not parts.netloc:
        return text
    return urlunsplit(
        (
            parts.scheme.lower(),
            parts.netloc.lower(),
            parts.path or "/",
            parts.query,
            parts.fragment,
        )
    )


class Catalogue:
    """Profiles by normalized URL and lower-case SHA-256, with hash-based fallbacks."""

    def __init__(self, urls: dict[str, Profile], files: dict[str, Profile]) -> None:
        self._urls = urls
        self._files = files

    @classmethod
    def load(cls, path: Path = CATALOGUE_PATH) -> "Catalogue":
        data = json.loads(path.read_text(encoding="utf-8"))
        urls = {
            normalize_url(entry["url"]): _profile_from_json(entry)
            for entry in data["urls"]
        }
        files = {
            entry["sha256"].lower(): _profile_from_json(entry)
            for entry in data["files"]
        }
        return cls(urls, files)

    def for_url(self, url: str) -> Profile:
        key = normalize_url(url)
        return self._urls.get(key) or _hashed_url_profile(key)

    def for_file(self, sha256: str) -> Profile:
        key = sha256.lower()
        return self._files.get(key) or _hashed_file_profile(key)


def _profile_from_json(entry: dict[str, Any]) -> Profile:
    return Profile(
        threat_level=entry["threatLevel"],
        score=entry["score"],
        tags=tuple(entry["tags"]),
        mitre=tuple(
            Technique(item["id"], item["name"], tuple(item["phases"]))
            for item in entry["mitre"]
        ),
        main_reputation=entry["mainReputation"],
        hosts=tuple(
            Host(
                domain=item.get("domain"),
                ip=item["ip"],
                port=item["port"],
                country=item["country"],
                asn=item["asn"],
                domain_reputation=item["domainReputation"],
                ip_reputation=item["ipReputation"],
            )
            for item in entry["hosts"]
        ),
        http=tuple(
            HttpRequest(
                item["url"],
                item["method"],
                item["status"],
                item["contentType"],
                item["reputation"],
            )
            for item in entry["http"]
        ),
        files=tuple(
            DroppedFile(
                item["path"],
                item["type"],
                item["mime"],
                item["size"],
                item["md5"],
                item["sha1"],
                item["sha256"],
                item["reputation"],
            )
            for item in entry["files"]
        ),
        processes=tuple(
            ChildProcess(item["image"], item["commandLine"], item["threatLevel"])
            for item in entry["processes"]
        ),
        threats=tuple(
            NetworkThreat(item["msg"], item["class"], item["host"])
            for item in entry["threats"]
        ),
        behaviors=tuple(
            Behavior(item["title"], item["threatLevel"], tuple(item["mitre"]))
            for item in entry["behaviors"]
        ),
        fail_after_seconds=entry.get("failAfterSeconds"),
    )


def stable_digest(kind: str, key: str) -> bytes:
    """Return a SHA-256 of ``key`` that stays the same across runs and machines."""
    return hashlib.sha256(f"anyrun-emulator/{kind}/{key}".encode()).digest()


_OBFUSCATION = Technique(
    "T1027", "Obfuscated Files or Information", ("defense-evasion",)
)
_SANDBOX_CHECKS = Technique(
    "T1497.001",
    "Virtualization/Sandbox Evasion: System Checks",
    ("defense-evasion", "discovery"),
)
_RUN_KEYS = Technique(
    "T1547.001",
    "Boot or Logon Autostart Execution: Registry Run Keys / Startup Folder",
    ("persistence", "privilege-escalation"),
)
_WEB_PROTOCOLS = Technique(
    "T1071.001",
    "Application Layer Protocol: Web Protocols",
    ("command-and-control",),
)


def _hashed_url_profile(url: str) -> Profile:
    digest = stable_digest("url", url)
    suspicious = int.from_bytes(digest[:2], "big") % 100 >= 85
    parts = urlsplit(url)
    hosts: tuple[Host, ...] = ()
    http: tuple[HttpRequest, ...] = ()
    if parts.hostname:
        default_port = 443 if parts.scheme == "https" else 80
        try:
            port = parts.port or default_port
        except ValueError:
            port = default_port
        network = "198.51.100" if suspicious else "192.0.2"
        domain: str | None = parts.hostname
        ip = f"{network}.{1 + digest[3] % 254}"
        try:
            ip = str(ipaddress.ip_address(parts.hostname))
            domain = None
        except ValueError:
            pass
        hosts = (
            Host(
                domain=domain,
                ip=ip,
                port=port,
                country="US",
                asn="AS64510 Example Hosting LLC",
                domain_reputation=int(suspicious),
                ip_reputation=0,
            ),
        )
        http = (HttpRequest(url, "GET", 200, "text/html", int(suspicious)),)
    if not suspicious:
        return Profile(0, 0, (), (), 0, hosts, http, (), (), (), (), source="hash")
    return Profile(
        threat_level=1,
        score=40 + digest[2] % 30,
        tags=(),
        mitre=(_OBFUSCATION,),
        main_reputation=1,
        hosts=hosts,
        http=http,
        files=(),
        processes=(),
        threats=(),
        behaviors=(Behavior("Page runs an obfuscated script", 1, (_OBFUSCATION.id,)),),
        source="hash",
    )


def _hashed_file_profile(sha256: str) -> Profile:
    digest = stable_digest("file", sha256)
    bucket = int.from_bytes(digest[:2], "big") % 100
    if bucket < 85:
        return Profile(0, 0, (), (), 0, (), (), (), (), (), (), source="hash")
    if bucket < 95:
        return Profile(
            threat_level=1,
            score=50 + digest[2] % 25,
            tags=(),
            mitre=(_SANDBOX_CHECKS,),
            main_reputation=1,
            hosts=(),
            http=(),
            files=(),
            processes=(),
            threats=(),
            behaviors=(
                Behavior(
                    "Checks for virtual machine artifacts", 1, (_SANDBOX_CHECKS.id,)
                ),
            ),
            source="hash",
        )
    c2_domain = f"c2-{digest[4:7].hex()}.example.net"
    c2 = Host(
        domain=c2_domain,
        ip=f"203.0.113.{1 + digest[3] % 254}",
        port=443,
        country="RU",
        asn="AS64511 Example Bulletproof LLC",
        domain_reputation=2,
        ip_reputation=2,
    )
    return Profile(
        threat_level=2,
        score=75 + digest[2] % 26,
        tags=("trojan",),
        mitre=(_RUN_KEYS, _WEB_PROTOCOLS),
        main_reputation=2,
        hosts=(c2,),
        http=(
            HttpRequest(
                f"https://{c2_domain}/gate.php",
                "POST",
                200,
                "application/octet-stream",
                2,
            ),
        ),
        files=(),
        processes=(),
        threats=(
            NetworkThreat(
                "ET MALWARE Generic trojan CnC beacon",
                "A Network Trojan was detected",
                c2_domain,
            ),
        ),
        behaviors=(
            Behavior("Changes the autorun value in the registry", 2, (_RUN_KEYS.id,)),
            Behavior(
                "Connects to a command and control server", 2, (_WEB_PROTOCOLS.id,)
            ),
        ),
        source="hash",
    )
