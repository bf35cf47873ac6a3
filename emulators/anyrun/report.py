"""JSON documents about a task: report, IOC list, history entry and monitor event.

The report follows the shape of a real ANY.RUN report (GET /v1/analysis/{uuid}):
``data.analysis``, ``data.processes``, ``data.network``, ``data.mitre`` and so on.
Its content comes from the task's verdict profile. Links point to app.any.run,
api.any.run and content.any.run as in real reports; they are strings only.
"""

import ntpath
import posixpath
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from emulators.anyrun.catalogue import VERDICT_TEXTS, Profile, stable_digest
from emulators.anyrun.guest import (
    BROWSER_IMAGES,
    GUEST_IP,
    OS_INFO,
    SOFTWARE,
    START_FOLDERS,
)
from emulators.anyrun.tasks import STATUS_COMPLETED, STATUS_FAILED, Task, fake_ssdeep
from emulators.clock import epoch_ms, iso_utc

APP_URL = "https://app.any.run/tasks/"
API_REPORT_URL = "https://api.any.run/report/"
CONTENT_URL = "https://content.any.run/tasks/"

REPUTATION_TEXTS = {0: "unknown", 1: "suspicious", 2: "malicious"}
FILE_THREAT_LEVELS = {0: "LOW", 1: "MEDIUM", 2: "HIGH"}
PROCESS_SCORES = {0: 0, 1: 50, 2: 100}


def task_url(task: Task) -> str:
    return APP_URL + task.uuid


def _entry_id(task: Task, *parts: object) -> str:
    return str(uuid.uuid5(uuid.UUID(task.uuid), "/".join(str(p) for p in parts)))


def monitor_event(task: Task, now: float) -> dict[str, Any]:
    """Build one event of the GET /v1/analysis/monitor/{uuid} stream."""
    status = task.status(now)
    body: dict[str, Any] = {
        "uuid": task.uuid,
        "status": status,
        "remaining": str(task.remaining(now)),
    }
    if task.verdict_known(now):
        body["scores"] = {
            "verdict": {
                "threat_level": task.profile.threat_level,
                "text": task.profile.verdict_text,
            }
        }
    return {
        "task": body,
        "completed": status == STATUS_COMPLETED,
        "error": status == STATUS_FAILED,
    }


def history_item(task: Task, now: float) -> dict[str, Any]:
    """Build one GET /v1/analysis entry; threat tags follow user tags once done."""
    completed = task.is_completed(now)
    tags = list(task.user_tags)
    if completed:
        tags += [tag for tag in task.profile.tags if tag not in tags]
    return {
        "uuid": task.uuid,
        "verdict": task.profile.verdict_text if completed else None,
        "name": task.name,
        "related": task_url(task),
        "pcap": f"{CONTENT_URL}{task.uuid}/download/pcap",
        "file": _sample_url(task) if task.file is not None else "",
        "json": f"{API_REPORT_URL}{task.uuid}/summary/json",
        "misp": f"{API_REPORT_URL}{task.uuid}/summary/misp",
        "tags": tags,
        "date": iso_utc(task.created_utc),
        "hashes": task.hashes(),
    }


def build_iocs(task: Task) -> list[dict[str, Any]]:
    """Build the IOC list of a finished task.

    The order is main object, dropped files, domains, IPs and URLs.

    Each (type, value) pair appears once, with the reputation of its first mention.
    """
    profile = task.profile
    items: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()

    def add(category: str, kind: str, name: str, value: str, reputation: int) -> None:
        key = (kind, value.lower())
        if key in seen:
            return
        seen.add(key)
        items.append(
            {
                "category": category,
                "type": kind,
                "name": name,
                "ioc": value,
                "reputation": reputation,
                "discoveringEntryId": _entry_id(task, "ioc", kind, value),
            }
        )

    if task.file is not None:
        add(
            "Main object",
            "sha256",
            task.file.filename,
            task.file.sha256,
            profile.main_reputation,
        )
    elif task.obj_url:
        add("Main object", "url", "", task.obj_url, profile.main_reputation)
    for dropped in profile.files:
        category = (
            "Dropped executable file"
            if dropped.type == "executable"
            else "Dropped files"
        )
        add(
            category,
            "sha256",
            ntpath.basename(dropped.path),
            dropped.sha256,
            dropped.reputation,
        )
    for host in profile.hosts:
        if host.domain:
            add("DNS requests", "domain", "", host.domain, host.domain_reputation)
    for host in profile.hosts:
        add("Connections", "ip", "", host.ip, host.ip_reputation)
    for request in profile.http:
        add("HTTP/HTTPS requests", "url", "", request.url, request.reputation)
    return items


def build_report(task: Task, now: float) -> dict[str, Any]:
    """Build the GET /v1/analysis/{uuid} body of a running or completed task.

    While the task runs, ``data.status`` is "running" and the report has no
    verdict, tags, MITRE techniques, behaviours or network activity yet.
    """
    done = task.is_completed(now)
    profile = task.profile
    processes = _processes(task, done)
    main_uuid = processes[0]["uuid"]
    start_ms = epoch_ms(task.created_utc)

    analysis: dict[str, Any] = {
        "content": _content(task),
        "creation": start_ms,
        "creationText": iso_utc(task.created_utc),
        "duration": task.duration,
        "options": _options(task),
        "permanentUrl": task_url(task),
        "reports": {
            "HTML": f"{API_REPORT_URL}{task.uuid}/summary/html",
            "IOC": f"{API_REPORT_URL}{task.uuid}/ioc/json",
            "MISP": f"{API_REPORT_URL}{task.uuid}/summary/misp",
            "graph": f"{CONTENT_URL}{task.uuid}/graph",
        },
        "sandbox": {
            "name": "ANY.RUN - Interactive Sandbox",
            "plan": {"name": "Enterprise"},
        },
        "tags": [{"tag": tag} for tag in profile.tags] if done else [],
        "uuid": task.uuid,
    }
    if done:
        stop = task.created_utc + timedelta(seconds=task.duration)
        analysis["stopExec"] = epoch_ms(stop)
        analysis["stopExecText"] = iso_utc(stop)
        analysis["scores"] = {
            "specs": _specs(task),
            "verdict": {
                "score": profile.score,
                "threatLevel": profile.threat_level,
                "threatLevelText": profile.verdict_text,
            },
        }

    network = _network(task, main_uuid, start_ms) if done else _empty_network()
    modified = _modified(task, main_uuid, start_ms) if done else _empty_modified()
    data = {
        "analysis": analysis,
        "counters": _counters(task, processes, network, modified),
        "debugStrings": [],
        "environments": _environments(task),
        "incidents": _incidents(task, main_uuid, start_ms) if done else [],
        "malconf": [],
        "mitre": [
            {"id": item.id, "name": item.name, "phases": list(item.phases)}
            for item in profile.mitre
        ]
        if done
        else [],
        "modified": modified,
        "network": network,
        "processes": processes,
        "status": "done" if done else "running",
    }
    return {"error": False, "data": data}


def _sample_url(task: Task) -> str:
    return f"{CONTENT_URL}{task.uuid}/download/files/{_entry_id(task, 'sample')}"


def _content(task: Task) -> dict[str, Any]:
    if task.file is not None:
        description, mime = _describe_file(task.file.head)
        extension = posixpath.splitext(task.file.filename)[1].lstrip(".").lower()
        main_object: dict[str, Any] = {
            "type": "file",
            "filename": task.file.filename,
            "hashes": task.hashes(),
            "info": {"ext": extension, "file": description, "mime": mime},
            "permanentUrl": _sample_url(task),
        }
    else:
        main_object = {
            "type": task.obj_type,
            "url": task.obj_url,
            "hashes": task.hashes(),
        }
    base = f"{CONTENT_URL}{task.uuid}/download"
    return {
        "mainObject": main_object,
        "pcap": {"permanentUrl": f"{base}/pcap", "present": True},
        "screenshots": [],
        "video": {"permanentUrl": f"{base}/video", "present": True},
    }


def _describe_file(head: bytes) -> tuple[str, str]:
    """Return a file(1)-style description and MIME type from the first bytes."""
    if head.startswith(b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR"):
        return "EICAR virus test files", "text/plain"
    if head.startswith(b"MZ"):
        return (
            "PE32 executable (GUI) Intel 80386, for MS Windows",
            "application/x-dosexec",
        )
    if head.startswith(b"PK\x03\x04"):
        return "Zip archive data, at least v2.0 to extract", "application/zip"
    if head.startswith(b"%PDF"):
        return "PDF document", "application/pdf"
    if head.startswith(b"\x7fELF"):
        return "ELF 64-bit LSB executable, x86-64", "application/x-executable"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "data", "application/octet-stream"
    if all(char.isprintable() or char in "\r\n\t" for char in text):
        return "ASCII text", "text/plain"
    return "data", "application/octet-stream"


def _options(task: Task) -> dict[str, Any]:
    options = task.options
    return {
        "additionalTime": 0,
        "automatization": {
            "uac": options["auto_confirm_uac"],
            "interactivity": options["opt_automated_interactivity"],
        },
        "fakeNet": options["opt_network_fakenet"],
        "heavyEvasion": options["opt_kernel_heavyevasion"],
        "hideSource": options["opt_privacy_hidesource"],
        "mitm": options["opt_network_mitm"],
        "network": options["opt_network_connect"],
        "presentation": False,
        "privacy": options["opt_privacy_type"],
        "privateSample": options["opt_privacy_type"] in ("owner", "byteam"),
        "residentialProxy": {
            "geo": options["opt_network_residential_proxy_geo"],
            "used": options["opt_network_residential_proxy"],
        },
        "timeout": options["opt_timeout"],
        "tor": {"geo": options["opt_network_geo"], "used": options["opt_network_tor"]},
        "video": True,
    }


def _environments(task: Task) -> dict[str, Any]:
    env_os = task.options["env_os"]
    info = dict(OS_INFO[(env_os, task.options["env_version"])])
    bits = task.options["env_bitness"]
    info["title"] = info["title"].format(bits=bits)
    info["bitness"] = bits
    info["softSet"] = task.options["env_type"]
    environments: dict[str, Any] = {
        "os": info,
        "software": list(SOFTWARE.get(env_os, [])),
        "hotfixes": [{"title": "KB5034441"}, {"title": "KB5034763"}]
        if env_os == "windows"
        else [],
    }
    if env_os == "windows":
        environments["internetExplorer"] = {
            "kbnum": "KB3058515",
            "version": "11.0.19041.1",
        }
    return environments


def _main_image(task: Task) -> tuple[str, str, str, str]:
    """Return image path, command line, company and description of the main process."""
    env_os = task.options["env_os"]
    if task.file is not None:
        folders = START_FOLDERS.get(env_os)
        if folders is None:
            image = f"/data/local/tmp/{task.file.filename}"
        else:
            folder = folders[task.options["obj_ext_startfolder"] or "temp"]
            join = ntpath.join if env_os == "windows" else posixpath.join
            image = join(folder, task.file.filename)
        command = f'"{image}" {task.options["obj_ext_cmd"] or ""}'.rstrip()
        return image, command, "", ""
    browser = task.options["obj_ext_browser"]
    known = BROWSER_IMAGES.get((env_os, browser))
    if known is None:
        image, company, description = "com.android.chrome", "Google LLC", "Chrome"
    else:
        image, company, description = known
    return image, f'"{image}" "{task.obj_url}"', company, description


def _processes(task: Task, done: bool) -> list[dict[str, Any]]:
    profile = task.profile
    digest = stable_digest("pids", task.uuid)
    start_ms = epoch_ms(task.created_utc)
    image, command, company, description = _main_image(task)
    main_level = profile.threat_level if task.file is not None else 0
    main = _process(
        task,
        index=0,
        pid=1000 + int.from_bytes(digest[:2], "big") % 7000,
        ppid=372 if task.options["env_os"] == "windows" else 1,
        image=image,
        command=command,
        threat_level=main_level if done else 0,
        parent=None,
        time_ms=start_ms + 1500,
        version=(company, description),
    )
    processes = [main]
    if not done:
        return processes
    for index, child in enumerate(profile.processes, start=1):
        processes.append(
            _process(
                task,
                index=index,
                pid=main["pid"] + 400 * index + digest[2 + index % 20],
                ppid=processes[-1]["pid"],
                image=child.image,
                command=child.command_line,
                threat_level=child.threat_level,
                parent=processes[-1]["uuid"],
                time_ms=start_ms + 4000 * (index + 1),
                version=("Microsoft Corporation", ""),
            )
        )
    return processes


def _process(
    task: Task,
    *,
    index: int,
    pid: int,
    ppid: int,
    image: str,
    command: str,
    threat_level: int,
    parent: str | None,
    time_ms: int,
    version: tuple[str, str],
) -> dict[str, Any]:
    file_name = ntpath.basename(image) if "\\" in image else posixpath.basename(image)
    process: dict[str, Any] = {
        "commandLine": command,
        "context": {"integrityLevel": "MEDIUM", "rebootNumber": 0, "userName": "admin"},
        "fileName": file_name,
        "fileType": "DROPPED" if task.file is not None and index == 0 else "SYSTEM",
        "image": image,
        "mainProcess": index == 0,
        "modules": [],
        "pid": pid,
        "ppid": ppid,
        "scores": {
            "dropped": False,
            "injected": False,
            "loadsSusp": False,
            "monitoringReason": "Main process" if index == 0 else "Child process",
            "verdict": {
                "score": PROCESS_SCORES[threat_level],
                "threatLevel": threat_level,
                "threatLevelText": VERDICT_TEXTS[threat_level],
            },
        },
        "status": "FINISHED",
        "times": {"monitoringSince": time_ms, "start": time_ms},
        "uuid": _entry_id(task, "process", index),
        "versionInfo": {
            "company": version[0],
            "description": version[1],
            "version": "",
        },
    }
    if parent is not None:
        process["parentUUID"] = parent
    return process


def _host_ips(profile: Profile) -> dict[str, tuple[str, int]]:
    return {host.domain: (host.ip, host.port) for host in profile.hosts if host.domain}


def _empty_network() -> dict[str, list[Any]]:
    return {"connections": [], "dnsRequests": [], "httpRequests": [], "threats": []}


def _network(task: Task, main_uuid: str, start_ms: int) -> dict[str, list[Any]]:
    profile = task.profile
    ips = _host_ips(profile)
    dns = [
        {
            "domain": host.domain,
            "ips": [host.ip],
            "reputation": REPUTATION_TEXTS[host.domain_reputation],
            "time": start_ms + 2000 + 100 * index,
        }
        for index, host in enumerate(profile.hosts)
        if host.domain
    ]
    connections = [
        {
            "ip": host.ip,
            "port": host.port,
            "protocol": "tcp",
            "country": host.country,
            "asn": host.asn,
            "domain": host.domain or "",
            "reputation": REPUTATION_TEXTS[host.ip_reputation],
            "process": main_uuid,
            "time": start_ms + 2100 + 100 * index,
        }
        for index, host in enumerate(profile.hosts)
    ]
    http = []
    for index, request in enumerate(profile.http):
        hostname = urlsplit(request.url).hostname or ""
        ip, port = ips.get(
            hostname, ("", 443 if request.url.startswith("https") else 80)
        )
        http.append(
            {
                "url": request.url,
                "method": request.method,
                "host": hostname,
                "ip": ip,
                "port": port,
                "status": request.status,
                "contentType": request.content_type,
                "reputation": REPUTATION_TEXTS[request.reputation],
                "process": main_uuid,
                "time": start_ms + 2500 + 200 * index,
            }
        )
    threats = []
    for index, threat in enumerate(profile.threats):
        ip, port = ips.get(threat.host, ("", 443))
        threats.append(
            {
                "msg": threat.message,
                "class": threat.classification,
                "srcIp": GUEST_IP,
                "srcPort": 49700 + index,
                "dstIp": ip,
                "dstPort": port,
                "process": main_uuid,
                "time": start_ms + 3000 + 200 * index,
            }
        )
    return {
        "connections": connections,
        "dnsRequests": dns,
        "httpRequests": http,
        "threats": threats,
    }


def _empty_modified() -> dict[str, list[Any]]:
    return {"files": [], "registry": []}


def _modified(task: Task, main_uuid: str, start_ms: int) -> dict[str, list[Any]]:
    files = [
        {
            "filename": dropped.path,
            "hashes": {
                "md5": dropped.md5,
                "sha1": dropped.sha1,
                "sha256": dropped.sha256,
                "ssdeep": fake_ssdeep(dropped.sha256, dropped.size),
            },
            "info": {"file": dropped.mime},
            "permanentUrl": f"{CONTENT_URL}{task.uuid}/download/files/"
            + _entry_id(task, "file", dropped.sha256),
            "process": main_uuid,
            "size": dropped.size,
            "threatLevel": FILE_THREAT_LEVELS[dropped.reputation],
            "time": start_ms + 5000 + 500 * index,
            "type": dropped.type,
        }
        for index, dropped in enumerate(task.profile.files)
    ]
    return {"files": files, "registry": []}


def _incidents(task: Task, main_uuid: str, start_ms: int) -> list[dict[str, Any]]:
    return [
        {
            "count": 1,
            "desc": {0: "Info", 1: "Suspicious", 2: "Malicious"}[behavior.threat_level],
            "events": [],
            "firstSeen": start_ms + 6000 + 1000 * index,
            "mitre": list(behavior.mitre),
            "process": main_uuid,
            "source": "behavior",
            "threatLevel": behavior.threat_level,
            "title": behavior.title,
        }
        for index, behavior in enumerate(task.profile.behaviors)
    ]


def _specs(task: Task) -> dict[str, bool]:
    profile = task.profile
    technique_ids = {item.id for item in profile.mitre}
    return {
        "autostart": any(tid.startswith("T1547") for tid in technique_ids),
        "cpuOverrun": False,
        "crashedApps": False,
        "crashedTask": False,
        "debugOutput": False,
        "executableDropped": any(f.type == "executable" for f in profile.files),
        "exploitable": False,
        "injects": False,
        "lowAccess": False,
        "memOverrun": False,
        "multiprocessing": bool(profile.processes),
        "networkLoader": "T1105" in technique_ids,
        "networkThreats": bool(profile.threats),
        "notStarted": False,
        "privEscalation": False,
        "rebooted": False,
        "serviceLauncher": False,
        "spam": False,
        "staticDetections": task.file is not None and profile.threat_level == 2,
        "stealing": any(tid.startswith("T1056") for tid in technique_ids),
        "suspStruct": False,
        "torUsed": task.options["opt_network_tor"],
    }


def _counters(
    task: Task,
    processes: list[dict[str, Any]],
    network: dict[str, list[Any]],
    modified: dict[str, list[Any]],
) -> dict[str, dict[str, int]]:
    digest = stable_digest("counters", task.uuid)
    levels = [process["scores"]["verdict"]["threatLevel"] for process in processes]
    files = modified["files"]
    registry_reads = 150 + int.from_bytes(digest[:2], "big") % 400
    registry_writes = digest[2] % 40
    return {
        "files": {
            "malicious": sum(1 for f in files if f["threatLevel"] == "HIGH"),
            "suspicious": sum(1 for f in files if f["threatLevel"] == "MEDIUM"),
            "text": sum(1 for f in files if f["type"] in ("text", "script")),
            "unknown": sum(1 for f in files if f["threatLevel"] == "LOW"),
        },
        "network": {
            "connections": len(network["connections"]),
            "dns": len(network["dnsRequests"]),
            "http": len(network["httpRequests"]),
            "threats": len(network["threats"]),
        },
        "processes": {
            "malicious": levels.count(2),
            "monitored": len(processes),
            "suspicious": levels.count(1),
            "total": len(processes) + 30 + digest[3] % 20,
        },
        "registry": {
            "delete": 0,
            "read": registry_reads,
            "total": registry_reads + registry_writes,
            "write": registry_writes,
        },
    }
