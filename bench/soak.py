"""Soak run: many incidents through the local stack while every kind of fault hits it.

It starts Azurite, the emulators and devhost on 127.0.0.1, seeds the Sentinel
emulator with N generated incidents (URLs, and files that it first places on
the Defender emulator's devices) and posts them to the webhook. Before the
first post, each emulator gets fault rules that hit about `--fault-rate` of
its API requests. The kinds are throttling with Retry-After, 5xx, responses
slower than the client's timeout, connections reset before or after a call
took effect, cut event streams, report 404s, etag conflicts, partial TI
failures and expired tokens. While the run lasts, a chaos thread also uses up
the sandbox's daily quota for a few seconds at a time and restarts Azurite.

When every instance has ended (or the time budget is spent) it reads the
emulators' state and request logs, devhost's status API and logs, and
reports: incidents, faults injected by kind, retries, results reported as
failed with their reasons, duplicated effects and lost incidents. It also
scans every log, status, comment, script output and request log for the
run's secrets.

    python -m bench.soak [--incidents 200] [--fault-rate 0.1] [--seed 7]

Figures are printed and written to bench/results/soak.json (--output). The
exit status is 1 when an incident is lost, an effect is doubled, a secret
leaks, a blob is left, or an indicator is neither stored nor reported failed.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.cost import blank_trigger_body
from devhost.stack import AZURITE_KEY, ROOT, LocalStack, load_samples
from enrichment.incident import extract
from enrichment.indicators import indicator_id, pattern_for

RESULTS = ROOT / "bench" / "results"
ENDED = ("Completed", "Failed", "Terminated")
# Known values for the run's secrets, which the scan searches for.
MARKERS = {
    "anyrun_key": "soak-anyrun-key-7f1c2b9e4d",
    "bearer_token": "soak-bearer-token-3a8d5e0c6b",
    "function_key": "soak-function-key-9b4e1d7a2f",
}
SAS_SIGNATURE = re.compile(r"sig=[A-Za-z0-9%+/=]{16,}")
BEARER_HEADER = re.compile(r"Bearer\s+[A-Za-z0-9._~+/-]{16,}")
# The Live Response script's argument: "v1." and base64url JSON, which hides
# a SAS URL from a plain-text search.
SCRIPT_ARGUMENT = re.compile(r"v1\.([A-Za-z0-9_-]{24,})")
# Read timeout of the connector's HTTP calls during the soak. Slow responses
# come later than this.
HTTP_TIMEOUT_SECONDS = 3
SLOW_SECONDS = HTTP_TIMEOUT_SECONDS + 1.5
# IOC reputations that the default INDICATOR_REPUTATIONS uploads (1 suspicious,
# 2 malicious), in the numbers of ANY.RUN's IOC list.
UPLOADED_REPUTATIONS = (1, 2)

# Devices of the Defender emulator's catalogue that receive the soak's files,
# with the sample incident whose Host entity and Defender alert they reuse.
DEVICES = {
    "linux": {
        "machine": "7f3c0a9e5d1b4c2a8e6f0d9c7b5a3e1f2d4c6b8a",
        "sample": "file-linux-hunting.json",
        "folder": "/opt/soak",
        "suffix": ".sh",
    },
    "linux-quarantine": {
        "machine": "00000000000000000000000000000000deadbeef",
        "sample": "file-linux-quarantined.json",
        "folder": "/srv/soak",
        "suffix": ".bin",
    },
    "windows": {
        "machine": "1e5bc9d7e413ddd7902c2932e418702b84d0cc07",
        "sample": "file-windows-invoice.json",
        "folder": "C:\\Users\\Public\\soak",
        "suffix": ".exe",
    },
}
FILE_SHARE = 0.3
SHARED_URLS = 12
SHARED_URL_SHARE = 0.2
# Azurite restarts per 100 incidents, at least one, spread over the posting.
AZURITE_RESTARTS_PER_100 = 1
# devhost's activity threads during the soak.
WORKERS = 16
# Wall seconds for which the chaos thread keeps a sandbox limit full.
LIMIT_SECONDS = 2.0


# Workload -------------------------------------------------------------------


@dataclass
class SoakFile:
    device: str
    name: str
    folder: str
    content: bytes
    with_path: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def path(self) -> str:
        separator = "\\" if self.device == "windows" else "/"
        return f"{self.folder}{separator}{self.name}"


@dataclass
class SoakIncident:
    index: int
    urls: list[str] = field(default_factory=list)
    file: SoakFile | None = None

    @property
    def name(self) -> str:
        return f"5a000000-0000-4000-8000-{self.index:012d}"


def build_workload(count: int, seed: int) -> list[SoakIncident]:
    """Return `count` incidents: URL incidents and file incidents (with or
    without a URL); some URLs recur across incidents. Same arguments, same
    workload."""
    rng = random.Random(seed)
    shared = [
        f"https://shared-{n:02d}.soak.example.com/login" for n in range(SHARED_URLS)
    ]
    incidents = []
    for index in range(count):
        incident = SoakIncident(index)
        has_file = rng.random() < FILE_SHARE
        url_count = rng.choice((0, 1)) if has_file else rng.choice((1, 1, 2, 3))
        for slot in range(url_count):
            if rng.random() < SHARED_URL_SHARE:
                url = rng.choice(shared)
                if url not in incident.urls:
                    incident.urls.append(url)
            else:
                incident.urls.append(
                    f"https://i{index:04d}-{slot}.soak.example.org/download?id={index}"
                )
        if has_file:
            device = rng.choice(sorted(DEVICES))
            spec = DEVICES[device]
            name = f"soak-{seed}-{index:04d}{spec['suffix']}"
            if device == "windows":
                content = b"MZ" + f" soak file {seed} {index} ".encode() * 64
            elif device == "linux-quarantine":
                content = b"\x7fELF" + f" soak file {seed} {index} ".encode() * 32
            else:
                content = f"#!/bin/sh\necho soak {seed} {index}\n".encode()
            incident.file = SoakFile(
                device=device,
                name=name,
                folder=spec["folder"],
                content=content,
                with_path=rng.random() < 0.7,
            )
        incidents.append(incident)
    return incidents


def _sample_parts() -> dict[str, dict[str, Any]]:
    """Return each device's Host entity and Defender alert from its sample."""
    samples = dict(load_samples())
    parts = {}
    for device, spec in DEVICES.items():
        body = samples[spec["sample"]]
        properties = (body.get("Body") or body)["object"]["properties"]
        host = next(e for e in properties["relatedEntities"] if e["kind"] == "Host")
        parts[device] = {"host": host, "alert": properties["alerts"][0]}
    return parts


def trigger_bodies(workload: list[SoakIncident]) -> list[dict[str, Any]]:
    """Build one Sentinel trigger body per incident from the URL sample's shape."""
    parts = _sample_parts()
    bodies = []
    for incident in workload:
        body, entity_base = blank_trigger_body(
            incident.name,
            700_000 + incident.index,
            f"Soak incident {incident.index}",
        )
        properties = body["object"]["properties"]
        entities = []
        for slot, url in enumerate(incident.urls):
            entities.append(
                _entity(entity_base, incident.index, slot, "Url", {"url": url})
            )
        if incident.file is not None:
            part = parts[incident.file.device]
            entities += _file_entities(entity_base, incident, part)
            properties["alerts"] = [copy.deepcopy(part["alert"])]
        properties["relatedEntities"] = entities
        bodies.append({"eventUniqueId": incident.name, **body})
    return bodies


def _entity(
    base: str, index: int, slot: int, kind: str, properties: dict[str, Any]
) -> dict[str, Any]:
    name = f"e5000000-0000-4000-8000-{index:08d}{slot:04d}"
    return {
        "id": f"{base}/{name}",
        "name": name,
        "type": "Microsoft.SecurityInsights/Entities",
        "kind": kind,
        "properties": properties,
    }


def _file_entities(
    base: str, incident: SoakIncident, part: dict[str, Any]
) -> list[dict[str, Any]]:
    """Return the Host, File and FileHash entities of the incident's file."""
    file = incident.file
    assert file is not None
    host_properties = copy.deepcopy(part["host"]["properties"])
    host = _entity(base, incident.index, 100, "Host", host_properties)
    digest = _entity(
        base,
        incident.index,
        101,
        "FileHash",
        {
            "algorithm": "SHA256",
            "hashValue": file.sha256,
            "friendlyName": f"{file.sha256}(SHA256)",
        },
    )
    file_properties: dict[str, Any] = {
        "fileName": file.name,
        "fileHashEntityIds": [digest["id"]],
        "hostEntityId": host["id"],
        "friendlyName": file.name,
    }
    if file.with_path:
        file_properties["directory"] = file.folder
    return [host, _entity(base, incident.index, 102, "File", file_properties), digest]


# Faults -----------------------------------------------------------------------

ANY_PATH = {"path_prefix": "/"}
REPORT_PATH = {"path_regex": r"/v1/analysis/[0-9a-fA-F-]{36}"}
INCIDENT_PUT = {
    "path_regex": r"/subscriptions/.+/Incidents/[^/]+",
    "method": "PUT",
}
COMMENT_PUT = {"path_regex": r"/subscriptions/.+/comments/[^/]+", "method": "PUT"}
TI_UPLOAD = {"path_regex": r"/workspaces/.+:upload", "method": "POST"}


def fault_plan(rate: float, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Return each emulator's fault rules.

    Each entry is (kind, target, extra fields, weight). A request that several
    rules match rolls each of them in turn, so the rules that can meet one
    request share `rate` by weight, and about `rate` of the requests get a
    fault. Every rule also comes once with certainty, so even a short run
    shows every kind.
    """
    retry_after = {"retry_after": 1}
    plans: dict[str, list[tuple[str, dict[str, Any], dict[str, Any], float]]] = {
        "anyrun": [
            ("status", ANY_PATH, {"status": 429, **retry_after}, 2),
            ("status", ANY_PATH, {"status": 500}, 1),
            ("status", ANY_PATH, {"status": 502}, 1),
            ("status", ANY_PATH, {"status": 503, **retry_after}, 1),
            ("delay", ANY_PATH, {"delay_seconds": SLOW_SECONDS}, 0.5),
            ("reset", ANY_PATH, {}, 1),
            (
                "reset_after",
                {"path_prefix": "/v1/analysis", "method": "POST"},
                {},
                2,
            ),
            (
                "late",
                {"path_prefix": "/v1/analysis", "method": "POST"},
                {"delay_seconds": SLOW_SECONDS},
                1,
            ),
            (
                "cut_stream",
                {"path_prefix": "/v1/analysis/monitor/"},
                {"events": 0},
                2,
            ),
            ("status", {**REPORT_PATH, "method": "GET"}, {"status": 404}, 3),
        ],
        "sentinel": [
            ("status", ANY_PATH, {"status": 429, **retry_after}, 2),
            ("status", ANY_PATH, {"status": 500}, 1),
            ("status", ANY_PATH, {"status": 503, **retry_after}, 1),
            ("delay", ANY_PATH, {"delay_seconds": SLOW_SECONDS}, 0.5),
            ("reset", ANY_PATH, {}, 1),
            ("reset_after", COMMENT_PUT, {}, 2),
            ("reset_after", TI_UPLOAD, {}, 2),
            ("late", COMMENT_PUT, {"delay_seconds": SLOW_SECONDS}, 1),
            ("status", INCIDENT_PUT, {"status": 409}, 3),
            ("partial", TI_UPLOAD, {"fail_ratio": 0.3}, 2),
            ("expire_token", ANY_PATH, {}, 1),
        ],
        "defender": [
            ("status", ANY_PATH, {"status": 429, **retry_after}, 2),
            ("status", ANY_PATH, {"status": 500}, 1),
            ("status", ANY_PATH, {"status": 503, **retry_after}, 1),
            ("delay", ANY_PATH, {"delay_seconds": SLOW_SECONDS}, 0.5),
            ("reset", ANY_PATH, {}, 1),
            ("reset_after", {"path_prefix": "/api/alerts/", "method": "PATCH"}, {}, 2),
            (
                "late",
                {"path_prefix": "/api/alerts/", "method": "PATCH"},
                {"delay_seconds": SLOW_SECONDS},
                1,
            ),
            ("expire_token", {"path_prefix": "/api/"}, {}, 1),
        ],
    }
    rules: dict[str, list[dict[str, Any]]] = {}
    for emulator, entries in plans.items():
        # The weight of everything that can hit a generic request.
        total = sum(weight for _, target, _, weight in entries if target is ANY_PATH)
        once = []
        rolled = []
        for number, (kind, target, extra, weight) in enumerate(entries):
            rule = {"kind": kind, **target, **extra}
            once.append({**rule, "times": 1, "seed": seed * 100 + 50 + number})
            probability = min(1.0, rate * weight / total)
            rolled.append(
                {
                    **rule,
                    "times": 1_000_000,
                    "probability": round(probability, 4),
                    "seed": seed * 100 + number,
                }
            )
        rules[emulator] = once + rolled
    return rules


def _install_faults(stack: LocalStack, plan: dict[str, list[dict[str, Any]]]) -> None:
    for emulator, rules in plan.items():
        response = httpx.post(
            f"{stack.url(emulator)}/_emulator/faults", json=rules, timeout=10
        )
        if response.status_code != 200:
            raise RuntimeError(
                f"{emulator} rejected the fault rules: {response.status_code} "
                f"{response.text}"
            )


def fault_label(rule: dict[str, Any]) -> str:
    """Name a rule's fault: its kind, or "status N" for an error status."""
    return f"status {rule['status']}" if rule["kind"] == "status" else rule["kind"]


def _fault_counts(
    stack: LocalStack, plan: dict[str, list[dict[str, Any]]]
) -> dict[str, dict[str, int]]:
    """Count the injected faults of each emulator by label.

    A rule still listed reports its own count. A rule no longer listed was
    used up, so it injected `times` faults.
    """
    counts: dict[str, dict[str, int]] = {}
    for emulator, rules in plan.items():
        response = httpx.get(f"{stack.url(emulator)}/_emulator/faults", timeout=10)
        response.raise_for_status()
        listed = {rule["seed"]: rule for rule in response.json()["faults"]}
        tally: Counter = Counter()
        for rule in rules:
            found = listed.get(rule["seed"])
            tally[fault_label(rule)] += (
                found["injected"] if found is not None else rule["times"]
            )
        counts[emulator] = dict(sorted(tally.items()))
    return counts


class Chaos(threading.Thread):
    """Fills the sandbox's limits for a few seconds at a time and restarts Azurite.

    The daily quota is used up for LIMIT_SECONDS at a time, about `rate` of the
    run's wall time from `first_limit_at` on. The parallel limit is left alone:
    the connector caches the account's limit for 5 wall minutes, which at 60x
    is hours of durable time, so a moment's low limit would throttle the rest
    of the run. The plan's injected 429 "Limits exceeded" on submissions is
    the response the sandbox returns for a full parallel limit.
    Azurite restarts at the given offsets (wall seconds after the start).
    """

    def __init__(
        self,
        stack: LocalStack,
        seed: int,
        rate: float,
        restarts_at: list[float],
        first_limit_at: float,
    ):
        super().__init__(name="soak-chaos", daemon=True)
        self.stack = stack
        self.rng = random.Random(seed)
        self.period = LIMIT_SECONDS / rate
        self.restarts_at = sorted(restarts_at)
        self.first_limit_at = first_limit_at
        self.stop_event = threading.Event()
        self.events: Counter = Counter()
        self.errors: list[str] = []

    def run(self) -> None:
        started = time.monotonic()
        next_limit = self.first_limit_at
        while not self.stop_event.wait(0.2):
            elapsed = time.monotonic() - started
            action = None
            if self.restarts_at and elapsed >= self.restarts_at[0]:
                self.restarts_at.pop(0)
                action = "azurite_restart"
            elif elapsed >= next_limit:
                action = "daily_quota"
                next_limit = elapsed + self.rng.uniform(0.5, 1.5) * self.period
            if action is None:
                continue
            try:
                getattr(self, action)()
                self.events[action] += 1
            except (httpx.HTTPError, OSError, RuntimeError, TimeoutError) as exc:
                self.errors.append(f"{action}: {exc}")

    def _limits(self, **body: int) -> dict[str, Any]:
        response = httpx.post(
            f"{self.stack.url('anyrun')}/_emulator/limits", json=body, timeout=10
        )
        response.raise_for_status()
        return response.json()

    def parallel_limit(self) -> None:
        """Lower the plan's parallel limit to what already runs, then restore it."""
        limits = self._limits()
        self._limits(parallels=max(1, limits["running"]))
        self.stop_event.wait(LIMIT_SECONDS)
        self._limits(parallels=limits["parallels"])

    def daily_quota(self) -> None:
        """Make today's quota used up for a moment, then lift it again."""
        limits = self._limits()
        self._limits(dailyQuota=limits["submissionsToday"])
        self.stop_event.wait(LIMIT_SECONDS)
        self._limits(dailyQuota=limits["dailyQuota"])

    def azurite_restart(self) -> None:
        self.stack.restart_azurite(down_seconds=self.rng.uniform(0.5, 2.0))

    def stop(self) -> None:
        self.stop_event.set()
        self.join(60)


# Run ------------------------------------------------------------------------


def _place_files(stack: LocalStack, workload: list[SoakIncident]) -> None:
    for incident in workload:
        file = incident.file
        if file is None:
            continue
        machine = DEVICES[file.device]["machine"]
        response = httpx.post(
            f"{stack.url('defender')}/_emulator/devices/{machine}/files",
            json={
                "path": file.path,
                "location": "disk",
                "content_base64": base64.b64encode(file.content).decode(),
            },
            timeout=10,
        )
        if response.status_code != 201:
            raise RuntimeError(
                f"the Defender emulator rejected {file.path}: "
                f"{response.status_code} {response.text}"
            )


def _post_all(
    stack: LocalStack, bodies: list[dict[str, Any]], rate: float
) -> dict[str, str]:
    """Post every body at `rate` per wall second; return instance id -> incident id."""
    posted = {}
    start = time.monotonic()
    for index, body in enumerate(bodies):
        delay = start + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        response = stack.post_incident(body)
        if response.status_code != 202:
            raise RuntimeError(
                f"incident {index}: {response.status_code} {response.text}"
            )
        posted[response.json()["id"]] = extract(body, 50).incident["id"].lower()
    return posted


def _wait_for_all(
    stack: LocalStack, instance_ids: list[str], timeout: float
) -> dict[str, dict[str, Any]]:
    """Poll the status API until every instance has ended or `timeout` passes."""
    deadline = time.monotonic() + timeout
    ended: dict[str, dict[str, Any]] = {}
    while True:
        for instance_id in instance_ids:
            if instance_id in ended:
                continue
            response = stack.incident_status(instance_id)
            if response.status_code != 200:
                continue
            body = response.json()
            if body.get("runtimeStatus") in ENDED:
                ended[instance_id] = body
        if len(ended) == len(instance_ids) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    for instance_id in instance_ids:
        if instance_id not in ended:
            response = stack.incident_status(instance_id)
            ended[instance_id] = (
                response.json()
                if response.status_code == 200
                else {"runtimeStatus": f"HTTP {response.status_code}"}
            )
    return ended


def _alert_comments(stack: LocalStack) -> dict[str, list[str]]:
    state = stack.emulator_state("defender")
    return {
        alert["id"]: [str(c.get("comment") or "") for c in alert["comments"]]
        for alert in state.get("alerts") or []
    }


def task_indicator_ids(stack: LocalStack, task_id: str) -> set[str]:
    """Return the ids of the indicators that a finished task's IOCs should give."""
    response = httpx.get(
        f"{stack.url('anyrun')}/report/{task_id}/ioc/json",
        headers={"Authorization": f"API-Key {stack.anyrun_key}"},
        timeout=10,
    )
    response.raise_for_status()
    ids = set()
    for ioc in response.json():
        if int(ioc.get("reputation", 0)) not in UPLOADED_REPUTATIONS:
            continue
        kind = str(ioc.get("type") or "").strip().lower()
        pattern = pattern_for(kind, str(ioc.get("ioc") or ""))
        if pattern is not None:
            ids.add(indicator_id(pattern))
    return ids


def run_soak(
    folder: Path,
    *,
    incidents: int,
    fault_rate: float,
    seed: int,
    time_scale: float = 60.0,
    post_rate: float = 4.0,
    timeout: float = 900.0,
) -> dict[str, Any]:
    """Run the soak in `folder` and return its figures and findings."""
    workload = build_workload(incidents, seed)
    bodies = trigger_bodies(workload)
    stack = _soak_stack(folder, bodies, time_scale)
    restarts = max(1, incidents * AZURITE_RESTARTS_PER_100 // 100)
    posting = incidents / post_rate
    restarts_at = [posting * (n + 1) / (restarts + 1) + 1.0 for n in range(restarts)]
    started = time.monotonic()
    with stack:
        _place_files(stack, workload)
        plan = fault_plan(fault_rate, seed)
        _install_faults(stack, plan)
        # The first quota fill comes while incidents still arrive, so even a
        # short run has submissions rejected.
        chaos = Chaos(stack, seed, fault_rate, restarts_at, posting / 2)
        chaos.start()
        try:
            posted = _post_all(stack, bodies, post_rate)
            statuses = _wait_for_all(stack, list(posted), timeout)
        finally:
            chaos.stop()
        wall_seconds = time.monotonic() - started
        faults = _fault_counts(stack, plan)
        # The state read below must not change under injected faults.
        for emulator in plan:
            httpx.delete(f"{stack.url(emulator)}/_emulator/faults", timeout=10)
        collected = _collect(stack, statuses)
    logs = {
        path.name: path.read_text(errors="replace")
        for path in (stack.data_dir / "logs").glob("*.log")
    }
    report = summarise(
        workload=workload,
        posted=posted,
        statuses=statuses,
        faults=faults,
        chaos=chaos,
        logs=logs,
        **collected,
    )
    report["secrets"] = scan_for_secrets(
        stack.data_dir,
        MARKERS,
        extra={
            "statuses": json.dumps(statuses),
            "sentinel_state": json.dumps(collected["sentinel"]),
            "defender_state": json.dumps(collected["defender"]),
            "request_logs": json.dumps(collected["requests"]),
        },
    )
    report["run"] = {
        "incidents": incidents,
        "fault_rate": fault_rate,
        "seed": seed,
        "time_scale": time_scale,
        "wall_seconds": round(wall_seconds, 1),
        "http_timeout_seconds": HTTP_TIMEOUT_SECONDS,
    }
    return report


def _soak_stack(
    folder: Path, bodies: list[dict[str, Any]], time_scale: float
) -> LocalStack:
    """Write the incidents for the Sentinel emulator and configure the stack."""
    incidents_dir = folder / "incidents"
    incidents_dir.mkdir(parents=True, exist_ok=True)
    for index, body in enumerate(bodies):
        (incidents_dir / f"soak-{index:05d}.json").write_text(json.dumps(body))
    settings = {
        # A few devices get all the soak's files, one Live Response session at
        # a time each, so the deadline leaves room for that queue.
        "UPLOAD_DEADLINE_MINUTES": "120",
        "HTTP_TIMEOUT_SECONDS": str(HTTP_TIMEOUT_SECONDS),
        "HTTP_MAX_RETRY_WAIT_SECONDS": "5",
        "MAX_OBJECTS_PER_INCIDENT": "20",
    }
    return LocalStack(
        folder / "stack",
        time_scale=time_scale,
        app_settings=settings,
        incidents_dir=incidents_dir,
        # A plan with room for the whole burst: the soak measures faults, not
        # waiting for sandbox slots.
        parallel_limit=100,
        # Faults make activities sleep (Retry-After, the wait after an unknown
        # outcome). Azure would add instances, so devhost gets more threads.
        workers=WORKERS,
        **MARKERS,
    )


def _collect(stack: LocalStack, statuses: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Read the emulators' state and request logs, and what the run should show."""
    done_tasks = {
        item["task_id"]
        for status in statuses.values()
        for item in (status.get("output") or {}).get("objects") or []
        if item.get("status") == "done"
    }
    return {
        "requests": {
            name: stack.emulator_requests(name)["requests"]
            for name in ("anyrun", "sentinel", "defender")
        },
        "anyrun": stack.emulator_state("anyrun"),
        "sentinel": stack.emulator_state("sentinel"),
        "defender": stack.emulator_state("defender"),
        "alerts": _alert_comments(stack),
        "expected": {task: task_indicator_ids(stack, task) for task in done_tasks},
        "blobs": stack.upload_blobs(),
    }


# Figures ----------------------------------------------------------------------

RETRY_LINE = re.compile(r"http\.retry service=(.+?) operation=(.+?) attempt=")
TASK_RETRY_LINE = re.compile(r"task\.retry instance=\S+ function=(\S+)")
ACTIVITY_FAILED = re.compile(
    r"activity\.failed instance=\S+ function=(\S+) .*?error_type=(\S+)"
)


def _reason_key(reason: str) -> str:
    """Replace ids, hashes and times in a failure reason so that alike ones group."""
    text = re.sub(r"inc-[0-9a-f-]+(:[a-z]+-[0-9a-f]+)?", "<instance>", reason)
    text = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+(Z|[+-]\d\d:\d\d)?", "<time>", text)
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f-]{19,}", "<id>", text)
    text = re.sub(r"\b[0-9a-f]{32,64}\b", "<hash>", text)
    return text[:200]


def summarise(**run: Any) -> dict[str, Any]:
    workload: list[SoakIncident] = run["workload"]
    statuses: dict[str, dict[str, Any]] = run["statuses"]
    posted: dict[str, str] = run["posted"]

    runtime = Counter(status.get("runtimeStatus") for status in statuses.values())
    commented = {
        incident["id"].lower(): len(incident["comments"])
        for incident in run["sentinel"]["incidents"]
    }
    lost = sorted(
        instance_id
        for instance_id, incident_id in posted.items()
        if statuses[instance_id].get("runtimeStatus") != "Completed"
        or not commented.get(incident_id)
    )

    objects = Counter()
    failed_reasons: Counter = Counter()
    write_failures: Counter = Counter()
    indicator_failures: Counter = Counter()
    for status in statuses.values():
        output = status.get("output") or {}
        for item in output.get("objects") or []:
            objects[item.get("status")] += 1
            if item.get("status") != "done":
                failed_reasons[
                    f"{item.get('status')}: {_reason_key(str(item.get('reason')))}"
                ] += 1
        writes = output.get("writes") or {}
        for name, write in writes.items():
            if isinstance(write, dict) and write.get("status") in ("failed", "partial"):
                write_failures[name] += 1
        indicators = output.get("indicators") or {}
        for error in indicators.get("errors") or []:
            text = error if isinstance(error, str) else json.dumps(error)
            indicator_failures[_reason_key(text)] += 1

    duplicates = _duplicates(run)
    stored = {
        ident
        for workspace in run["sentinel"]["indicators"].values()
        for ident in workspace
    }
    expected = set().union(*run["expected"].values()) if run["expected"] else set()
    reported = {
        indicator_id(error["pattern"])
        for status in statuses.values()
        for error in ((status.get("output") or {}).get("indicators") or {}).get(
            "errors"
        )
        or []
        if isinstance(error, dict) and error.get("pattern")
    }
    missing = expected - stored
    retries = Counter()
    activity_retries = Counter()
    activity_failures = Counter()
    for match in RETRY_LINE.finditer(run["logs"].get("devhost.log", "")):
        retries[f"{match[1]}: {match[2]}"] += 1
    for match in TASK_RETRY_LINE.finditer(run["logs"].get("devhost.log", "")):
        activity_retries[match[1]] += 1
    for match in ACTIVITY_FAILED.finditer(run["logs"].get("devhost.log", "")):
        activity_failures[f"{match[1]} ({match[2]})"] += 1

    request_counts = {name: len(items) for name, items in run["requests"].items()}
    injected = {
        emulator: dict(sorted(kinds.items()))
        for emulator, kinds in run["faults"].items()
    }
    throttled_submissions = sum(
        1
        for entry in run["requests"]["anyrun"]
        if entry["method"] == "POST"
        and entry["path"] == "/v1/analysis"
        and entry["status"] == 429
    )
    return {
        "incidents": {
            "posted": len(posted),
            "generated": len(workload),
            "with_file": sum(1 for item in workload if item.file is not None),
            "runtime_status": dict(runtime),
            "lost": len(lost),
            "lost_instances": lost[:20],
        },
        "objects": dict(objects),
        "failed_results": dict(failed_reasons.most_common()),
        "failed_writes": dict(write_failures),
        "indicator_failures": dict(indicator_failures.most_common()),
        "requests": request_counts,
        "faults_injected": injected,
        "fault_share": {
            name: round(sum(injected.get(name, {}).values()) / count, 3)
            for name, count in request_counts.items()
            if count
        },
        "chaos": dict(run["chaos"].events),
        "chaos_errors": run["chaos"].errors,
        "throttled_submissions": throttled_submissions,
        "http_retries": dict(retries.most_common()),
        "http_retries_total": sum(retries.values()),
        "activity_retries": dict(activity_retries.most_common()),
        "activity_failures": dict(activity_failures.most_common()),
        "duplicates": duplicates,
        "duplicated_effects": sum(len(items) for items in duplicates.values()),
        "indicators": {
            "expected": len(expected),
            "stored": len(stored & expected),
            "missing_reported_failed": len(missing & reported),
            "missing_unreported": len(missing - reported),
        },
        "sandbox_tasks": len(run["anyrun"]["tasks"]),
        "blobs_left": len(run["blobs"]),
    }


def _duplicates(run: dict[str, Any]) -> dict[str, list[Any]]:
    """Return every effect that happened more than once, by kind."""
    tasks = run["anyrun"]["tasks"]
    per_object = Counter(t["obj"].get("sha256") or t["obj"].get("url") for t in tasks)
    per_tag = Counter(
        tag for task in tasks for tag in task["tags"] if tag.startswith("snt-")
    )
    comments = {}
    labels = {}
    for incident in run["sentinel"]["incidents"]:
        if len(incident["comments"]) > 1:
            comments[incident["id"]] = len(incident["comments"])
        names = [
            label.get("labelName") if isinstance(label, dict) else label
            for label in incident.get("labels") or []
        ]
        doubled = [name for name, n in Counter(names).items() if n > 1]
        if doubled:
            labels[incident["id"]] = doubled
    marker = re.compile(r"\[ANY\.RUN enrichment (.+?)\]")
    alert_comments = []
    for alert_id, notes in run["alerts"].items():
        per_marker = Counter(m for note in notes for m in marker.findall(note))
        alert_comments += [
            f"{alert_id} {mark} x{n}" for mark, n in per_marker.items() if n > 1
        ]
    patterns = Counter(
        indicator["pattern"]
        for workspace in run["sentinel"]["indicators"].values()
        for indicator in workspace.values()
    )
    doubled = {key for key, n in per_object.items() if n > 1}
    return {
        "submissions_per_object": [
            {
                "object": key,
                "tasks": [
                    {"tags": t["tags"], "created": t["created"], "status": t["status"]}
                    for t in tasks
                    if (t["obj"].get("sha256") or t["obj"].get("url")) == key
                ],
            }
            for key in sorted(doubled)
        ],
        "tasks_per_tag": [k for k, n in per_tag.items() if n > 1],
        "comments_per_incident": sorted(comments),
        "labels_per_incident": sorted(labels),
        "alert_comments_per_incident": alert_comments,
        "indicators_per_pattern": [p for p, n in patterns.items() if n > 1],
    }


def scan_for_secrets(
    folder: Path, markers: dict[str, str], extra: dict[str, str]
) -> dict[str, Any]:
    """Look for secrets in every file under `folder` and in the texts of `extra`.

    Files: the stack's logs, devhost's database, the Defender devices' folders
    and script runs. Azurite's own folder contains the uploaded samples and
    is left out. Secrets: the `markers` values, the storage account key, SAS
    signatures and bearer headers.
    """
    needles = {**markers, "storage_account_key": AZURITE_KEY}
    findings: list[str] = []
    scanned = 0

    def check(where: str, text: str) -> None:
        for encoded in SCRIPT_ARGUMENT.findall(text):
            padded = encoded + "=" * (-len(encoded) % 4)
            try:
                decoded = base64.urlsafe_b64decode(padded).decode("latin-1")
            except ValueError:
                continue
            text += "\n" + decoded
        for name, value in needles.items():
            if value in text:
                findings.append(f"{name} in {where}")
        if SAS_SIGNATURE.search(text):
            findings.append(f"SAS signature in {where}")
        if BEARER_HEADER.search(text):
            findings.append(f"bearer header in {where}")

    azurite = folder / "azurite"
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or azurite in path.parents:
            continue
        scanned += 1
        text = path.read_bytes().decode("latin-1")
        check(str(path.relative_to(folder)), text)
    for where, text in extra.items():
        scanned += 1
        check(where, text)
    return {"scanned": scanned, "findings": findings}


def problems(report: dict[str, Any]) -> list[str]:
    """Return what makes the run fail: lost incidents, doubled effects, leaks."""
    found = []
    if report["incidents"]["lost"]:
        found.append(f"{report['incidents']['lost']} incidents lost")
    if report["duplicated_effects"]:
        found.append(f"{report['duplicated_effects']} duplicated effects")
    if report["secrets"]["findings"]:
        found.append(f"secrets found: {report['secrets']['findings'][:5]}")
    if report["indicators"]["missing_unreported"]:
        found.append(
            f"{report['indicators']['missing_unreported']} indicators neither "
            "stored nor reported failed"
        )
    if report["blobs_left"]:
        found.append(f"{report['blobs_left']} blobs left in the upload container")
    return found


def render_markdown(report: dict[str, Any]) -> str:
    """Render the report's figures as the tables of docs/reliability.md."""
    lines = []
    run, incidents = report["run"], report["incidents"]
    lines += [
        "| Figure | Value |",
        "| --- | --- |",
        f"| Incidents posted | {incidents['posted']} "
        f"({incidents['with_file']} with a file) |",
        f"| Runtime status | {_pairs(incidents['runtime_status'])} |",
        f"| Objects | {_pairs(report['objects'])} |",
        f"| Sandbox tasks | {report['sandbox_tasks']} |",
        f"| Lost incidents | {incidents['lost']} |",
        f"| Duplicated effects | {report['duplicated_effects']} |",
        f"| Indicators stored / expected | {report['indicators']['stored']} / "
        f"{report['indicators']['expected']} |",
        f"| Blobs left | {report['blobs_left']} |",
        f"| Secret findings ({report['secrets']['scanned']} files and texts) | "
        f"{len(report['secrets']['findings'])} |",
        f"| Wall time | {run['wall_seconds']} s at {run['time_scale']:g}x |",
        "",
        "| Emulator | API requests | Faults | Share | Faults by kind |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, kinds in report["faults_injected"].items():
        total = sum(kinds.values())
        lines.append(
            f"| {name} | {report['requests'][name]} | {total} | "
            f"{report['fault_share'].get(name, 0):.1%} | {_pairs(kinds)} |"
        )
    lines += [
        "",
        f"Chaos: {_pairs(report['chaos'])}; "
        f"{report['throttled_submissions']} submissions were answered 429, "
        "injected or from a full limit.",
        "",
        f"Retries inside the clients: {report['http_retries_total']}. "
        f"Activities run again by the orchestration: "
        f"{sum(report['activity_retries'].values())}.",
        "",
        "| Call retried by the client | Retries |",
        "| --- | --- |",
        *(
            f"| {call} | {count} |"
            for call, count in sorted(report["http_retries"].items())
        ),
        "",
        "| Activity run again | Times |",
        "| --- | --- |",
        *(
            f"| {name} | {count} |"
            for name, count in sorted(report["activity_retries"].items())
        ),
        "",
        "| Result reported as failed | Count |",
        "| --- | --- |",
    ]
    for reason, count in report["failed_results"].items():
        lines.append(f"| {reason} | {count} |")
    for reason, count in report["indicator_failures"].items():
        lines.append(f"| indicator: {reason} | {count} |")
    return "\n".join(lines) + "\n"


def _pairs(counts: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items()) or "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=200)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--time-scale", type=float, default=60.0)
    parser.add_argument("--post-rate", type=float, default=4.0)
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument("--output", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args(argv)
    if not 1 <= args.incidents <= 2000:
        parser.error("--incidents must be from 1 to 2000")
    if not 0 < args.fault_rate <= 0.5:
        parser.error("--fault-rate must be above 0 and at most 0.5")
    with tempfile.TemporaryDirectory(prefix="soak-") as folder:
        report = run_soak(
            Path(folder),
            incidents=args.incidents,
            fault_rate=args.fault_rate,
            seed=args.seed,
            time_scale=args.time_scale,
            post_rate=args.post_rate,
            timeout=args.timeout,
        )
    report["problems"] = problems(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    print(render_markdown(report))
    if report["problems"]:
        print("Problems: " + "; ".join(report["problems"]))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
