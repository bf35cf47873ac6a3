"""Benchmark: what the connector spends per incident, against two waiting baselines.

It runs the same workload once per waiting policy (STATUS_WAIT_POLICY:
remaining, then the fixed-interval and polling baselines). Each run starts a
fresh local stack (Azurite, the emulators and devhost on 127.0.0.1, one time
scale for all), seeds the Sentinel emulator with N generated incidents and
posts them to the webhook at a steady rate.
Each incident has `--objects` objects. A share `--repeat` of them comes from a
small pool of objects that recur across incidents: URLs and, with --files,
files on the Defender emulator's devices. The rest are URLs seen once.

When every incident has its comment it reads the emulators' request logs and
state, devhost's status API, its SQLite history and its CPU figures, and
reports per policy: incidents per minute, ANY.RUN calls per analysis by kind,
submissions against unique objects, Defender calls per file, history events
per sub-orchestration, orchestrator replay CPU, the lag from the end of the
last analysis of an incident to its comment (durable seconds, from the
emulators' clock), and devhost's peak RSS.

    python -m bench.cost [--incidents 500] [--time-scale 10] [--rate 12]

Figures are printed and written to bench/results/cost.json (--output). The
exit status is 1 when the remaining-time policy misses a target (see
`check`).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from devhost.stack import ROOT, LocalStack, load_samples
from enrichment.incident import extract

RESULTS = ROOT / "bench" / "results"
POLICIES = ("remaining", "fixed", "poll")
# Objects of the Defender emulator's catalogue that a Live Response script can
# fetch, taken from the sample incidents (entities: Host, File, FileHash).
FILE_SAMPLES = (
    "file-linux-hunting.json",
    "file-windows-invoice.json",
    "file-linux-quarantined.json",
)
# Targets of the remaining-time policy on the default workload.
MAX_CALLS_PER_ANALYSIS = 4.0
MAX_MEDIAN_LAG_SECONDS = 5.0
MAX_URL_HISTORY_EVENTS = 40

ANYRUN_KINDS = (
    ("monitor", re.compile(r"^GET /v1/analysis/monitor/")),
    ("report", re.compile(r"^GET /v1/analysis/[0-9a-f-]{36}$")),
    ("ioc", re.compile(r"^GET /report/[0-9a-f-]{36}/ioc/json$")),
    ("submit", re.compile(r"^POST /v1/analysis$")),
    ("lookup", re.compile(r"^GET /v1/analysis$")),
    ("user", re.compile(r"^GET /v1/user$")),
)
ANYRUN_KIND_NAMES = {
    "submit": "submit",
    "monitor": "status",
    "report": "report",
    "ioc": "ioc",
    "lookup": "tag_lookup",
    "user": "limits",
}


# Workload ------------------------------------------------------------------


def build_workload(
    incidents: int, objects: int, repeat: float, files: int, seed: int
) -> list[list[dict[str, str]]]:
    """Return each incident's objects: URLs ({"kind": "url", "url"}) and files
    ({"kind": "file", "sample"}).

    round(incidents * objects * repeat) object slots are taken from a pool of
    recurring objects, each of which appears in about five incidents. The
    pool's first `files` entries are files. The other slots get URLs of their
    own. The same arguments always give the same workload.
    """
    rng = random.Random(seed)
    slots = incidents * objects
    repeated = round(slots * repeat)
    pool_size = max(2, repeated // 5) if repeated else 0
    pool: list[dict[str, str]] = [
        {"kind": "file", "sample": name}
        for name in FILE_SAMPLES[: min(files, pool_size)]
    ]
    while len(pool) < pool_size:
        pool.append(
            {
                "kind": "url",
                "url": f"https://shared-{len(pool):04d}.bench.example.com/p",
            }
        )
    marks = [True] * repeated + [False] * (slots - repeated)
    rng.shuffle(marks)

    workload = []
    unique = 0
    for index in range(incidents):
        chosen: list[dict[str, str]] = []
        for slot in range(objects):
            if marks[index * objects + slot] and pool:
                candidates = [item for item in pool if item not in chosen]
                chosen.append(rng.choice(candidates))
            else:
                chosen.append(
                    {
                        "kind": "url",
                        "url": f"https://once-{unique:06d}.bench.example.com/",
                    }
                )
                unique += 1
        workload.append(chosen)
    return workload


def _file_entities() -> dict[str, list[dict[str, Any]]]:
    """Return the Host, File and FileHash entities of each file sample."""
    found = {}
    for name, body in load_samples():
        if name in FILE_SAMPLES:
            entities = (body.get("Body") or body)["object"]["properties"][
                "relatedEntities"
            ]
            found[name] = [
                entity
                for entity in entities
                if entity["kind"] in ("Host", "File", "FileHash")
            ]
    return found


def blank_trigger_body(name: str, number: int, title: str) -> tuple[dict, str]:
    """Copy the URL sample's trigger body as incident `name` with no labels,
    alerts or entities; return it with the id prefix of its entities."""
    template = dict(load_samples(pattern="url-phishing.json"))["url-phishing.json"]
    body = copy.deepcopy(template.get("Body") or template)
    incident = body["object"]
    properties = incident["properties"]
    entity_base = properties["relatedEntities"][0]["id"].rsplit("/", 1)[0]
    incident["id"] = f"{incident['id'].rsplit('/', 1)[0]}/{name}"
    incident["name"] = name
    incident["etag"] = f'"{name}"'
    properties["title"] = title
    properties["incidentNumber"] = number
    properties["providerIncidentId"] = str(number)
    properties["labels"] = []
    properties["alerts"] = []
    properties["relatedEntities"] = []
    return body, entity_base


def trigger_bodies(workload: list[list[dict[str, str]]]) -> list[dict[str, Any]]:
    """Build one Sentinel trigger body per incident from the URL sample's shape."""
    files = _file_entities()
    bodies = []
    for index, items in enumerate(workload):
        name = f"b0000000-0000-4000-8000-{index:012d}"
        body, entity_base = blank_trigger_body(
            name, 900_000 + index, f"Benchmark incident {index}"
        )
        properties = body["object"]["properties"]
        entities = []
        for position, item in enumerate(items):
            if item["kind"] == "file":
                entities.extend(copy.deepcopy(files[item["sample"]]))
                continue
            entity_name = f"e0000000-0000-4000-8000-{index:08d}{position:04d}"
            entities.append(
                {
                    "id": f"{entity_base}/{entity_name}",
                    "name": entity_name,
                    "type": "Microsoft.SecurityInsights/Entities",
                    "kind": "Url",
                    "properties": {"url": item["url"], "friendlyName": item["url"]},
                }
            )
        properties["relatedEntities"] = entities
        bodies.append({"eventUniqueId": name, **body})
    return bodies


def unique_objects(workload: list[list[dict[str, str]]]) -> int:
    return len(
        {item.get("url") or item.get("sample") for items in workload for item in items}
    )


# One run -------------------------------------------------------------------


def _emulated(text: str) -> datetime:
    """Parse an emulator timestamp (up to 7 fractional digits, Z)."""
    text = text.rstrip("Z")
    if "." in text:
        head, fraction = text.split(".", 1)
        text = f"{head}.{fraction[:6]}"
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class EmulatedClockReader:
    """Converts this process's monotonic time to the emulators' UTC time."""

    def __init__(self, stack: LocalStack) -> None:
        started = time.monotonic()
        health = httpx.get(f"{stack.url('anyrun')}/_emulator/health", timeout=10).json()
        self.speed = float(health["speed"])
        self.anchor_monotonic = (started + time.monotonic()) / 2
        self.anchor = _emulated(health["now"])

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self.anchor_monotonic) * self.speed
        return self.anchor + timedelta(seconds=elapsed)


def _post_all(
    stack: LocalStack, bodies: list[dict[str, Any]], interval: float, clock
) -> dict[str, dict[str, Any]]:
    """Post every body, one every `interval` wall seconds; return id -> arrival."""
    arrivals = {}
    start = time.monotonic()
    for index, body in enumerate(bodies):
        delay = start + index * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        arrived = clock.now()
        response = stack.post_incident(body)
        if response.status_code != 202:
            raise RuntimeError(
                f"incident {index}: {response.status_code} {response.text}"
            )
        incident_id = extract(body, 20).incident["id"].lower()
        arrivals[response.json()["id"]] = {"incident": incident_id, "arrived": arrived}
    return arrivals


def _wait_for_comments(
    stack: LocalStack, incident_ids: set[str], timeout: float
) -> dict[str, datetime]:
    """Poll the Sentinel emulator until every incident has a comment."""
    deadline = time.monotonic() + timeout
    while True:
        commented = {}
        for incident in stack.emulator_state("sentinel")["incidents"]:
            key = incident["id"].lower()
            if key in incident_ids and incident["comments"]:
                first = min(
                    _emulated(comment["createdTimeUtc"])
                    for comment in incident["comments"]
                )
                commented[key] = first
        if len(commented) == len(incident_ids):
            return commented
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(incident_ids) - len(commented)} of {len(incident_ids)} "
                f"incidents have no comment after {timeout:.0f} s"
            )
        time.sleep(1.0)


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _anyrun_calls(requests: list[dict[str, Any]]) -> Counter:
    calls: Counter = Counter()
    for entry in requests:
        line = f"{entry['method']} {entry['path']}"
        for kind, pattern in ANYRUN_KINDS:
            if pattern.match(line):
                calls[ANYRUN_KIND_NAMES[kind]] += 1
                break
        else:
            calls["other"] += 1
    return calls


def _history_counts(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT instance_id, COUNT(*) FROM history GROUP BY instance_id"
        ).fetchall()
        return dict(rows)


def _engine_stats(database: Path) -> dict[str, Any]:
    with sqlite3.connect(database) as connection:
        row = connection.execute(
            "SELECT value FROM meta WHERE key = 'stats.episodes'"
        ).fetchone()
    return json.loads(row[0]) if row else {}


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def _summary(values: list[float]) -> dict[str, float | None]:
    return {
        "median": round(statistics.median(values), 2) if values else None,
        "p95": round(_percentile(values, 0.95), 2) if values else None,
        "max": round(max(values), 2) if values else None,
    }


def run_policy(
    policy: str,
    workload: list[list[dict[str, str]]],
    args: argparse.Namespace,
    folder: Path,
) -> dict[str, Any]:
    """Run the workload once with one waiting policy; return its figures."""
    bodies = trigger_bodies(workload)
    incidents_dir = folder / "incidents"
    incidents_dir.mkdir(parents=True)
    for index, body in enumerate(bodies):
        (incidents_dir / f"bench-{index:05d}.json").write_text(json.dumps(body))
    settings = {
        "STATUS_WAIT_POLICY": policy,
        "REUSE_WINDOW_HOURS": str(args.reuse_window_hours),
        "MAX_OBJECTS_PER_INCIDENT": str(max(20, args.objects)),
    }
    stack = LocalStack(
        folder / "stack",
        time_scale=args.time_scale,
        app_settings=settings,
        incidents_dir=incidents_dir,
        parallel_limit=args.parallel_limit,
    )
    interval = 60.0 / (args.rate * args.time_scale)
    with stack:
        clock = EmulatedClockReader(stack)
        pid = stack.children["devhost"].process.pid
        cpu_before = _cpu_seconds(pid)
        wall_started = time.monotonic()
        arrivals = _post_all(stack, bodies, interval, clock)
        incident_ids = {item["incident"] for item in arrivals.values()}
        commented = _wait_for_comments(stack, incident_ids, args.timeout)
        wall_seconds = time.monotonic() - wall_started
        statuses = {iid: stack.wait_for(iid, timeout=args.timeout) for iid in arrivals}
        anyrun_requests = stack.emulator_requests("anyrun")["requests"]
        defender_requests = stack.emulator_requests("defender")["requests"]
        tasks = {task["uuid"]: task for task in stack.emulator_state("anyrun")["tasks"]}
        peak_rss = _peak_rss_mib(pid)
        devhost_cpu = _cpu_seconds(pid) - cpu_before
        database = stack.data_dir / "devhost" / "devhost.sqlite3"
        log_text = stack.children["devhost"].log_path
    # The engine writes its CPU figures when it closes, so read them after stop.
    history = _history_counts(database)
    engine = _engine_stats(database)
    continued = Counter(
        re.findall(
            r"orchestration\.continued_as_new instance=(\S+)", log_text.read_text()
        )
    )
    return _figures(
        policy=policy,
        workload=workload,
        args=args,
        arrivals=arrivals,
        commented=commented,
        statuses=statuses,
        anyrun_requests=anyrun_requests,
        defender_requests=defender_requests,
        tasks=tasks,
        history=history,
        continued=continued,
        engine=engine,
        peak_rss=peak_rss,
        devhost_cpu=devhost_cpu,
        wall_seconds=wall_seconds,
    )


def _figures(**run: Any) -> dict[str, Any]:
    workload = run["workload"]
    analyses = sum(len(items) for items in workload)
    file_objects = sum(
        1 for items in workload for item in items if item["kind"] == "file"
    )
    calls = _anyrun_calls(run["anyrun_requests"])
    tasks = run["tasks"]

    lags, not_done = [], 0
    for instance_id, arrival in run["arrivals"].items():
        output = run["statuses"][instance_id].get("output") or {}
        ends = []
        for item in output.get("objects") or []:
            task = tasks.get(item.get("task_id") or "")
            if item.get("status") != "done" or task is None:
                not_done += 1
                continue
            ends.append(
                _emulated(task["created"]) + timedelta(seconds=task["duration"])
            )
        ready = max([arrival["arrived"], *ends])
        lags.append((run["commented"][arrival["incident"]] - ready).total_seconds())

    first = min(item["arrived"] for item in run["arrivals"].values())
    last = max(run["commented"].values())
    durable_minutes = (last - first).total_seconds() / 60

    events: dict[str, list[int]] = defaultdict(list)
    executions: dict[str, list[int]] = defaultdict(list)
    for instance_id, count in run["history"].items():
        if ":" not in instance_id:
            continue
        kind = instance_id.rsplit(":", 1)[1].split("-", 1)[0]
        events[kind].append(count)
        executions[kind].append(1 + run["continued"].get(instance_id, 0))

    engine = run["engine"]
    episodes = engine.get("episodes") or 0
    return {
        "policy": run["policy"],
        "incidents": len(workload),
        "analyses": analyses,
        "not_done": not_done,
        "incidents_per_minute": round(len(workload) / durable_minutes, 2),
        "incidents_per_wall_minute": round(
            len(workload) / (run["wall_seconds"] / 60), 1
        ),
        "wall_seconds": round(run["wall_seconds"], 1),
        "anyrun_calls": dict(calls),
        "anyrun_calls_per_analysis": {
            kind: round(count / analyses, 3) for kind, count in sorted(calls.items())
        },
        "anyrun_calls_per_analysis_total": round(sum(calls.values()) / analyses, 3),
        "submissions": calls["submit"],
        "sandbox_tasks": len(tasks),
        "unique_objects": unique_objects(workload),
        "file_objects": file_objects,
        "defender_calls": len(run["defender_requests"]),
        "defender_calls_per_file": round(
            len(run["defender_requests"]) / file_objects, 2
        )
        if file_objects
        else None,
        "history_events": {
            kind: {
                "median": statistics.median(values),
                "max": max(values),
                "executions_max": max(executions[kind]),
            }
            for kind, values in sorted(events.items())
        },
        "replay_cpu_ms_per_episode": round(
            1000 * engine["replay_cpu_seconds"] / episodes, 3
        )
        if episodes
        else None,
        "replay_cpu_seconds": engine.get("replay_cpu_seconds"),
        "episode_cpu_seconds": engine.get("episode_cpu_seconds"),
        "episodes": episodes,
        "devhost_cpu_seconds": round(run["devhost_cpu"], 1),
        "lag_seconds": _summary(lags),
        "devhost_peak_rss_mib": round(run["peak_rss"], 1),
    }


def check(results: dict[str, dict[str, Any]]) -> list[str]:
    """Return the targets the remaining-time policy misses (empty when all are met)."""
    own = results["remaining"]
    problems = []
    if own["anyrun_calls_per_analysis_total"] > MAX_CALLS_PER_ANALYSIS:
        problems.append(
            f"{own['anyrun_calls_per_analysis_total']} ANY.RUN calls per analysis, "
            f"more than {MAX_CALLS_PER_ANALYSIS}"
        )
    median = own["lag_seconds"]["median"]
    if median is None or median > MAX_MEDIAN_LAG_SECONDS:
        problems.append(f"median lag {median} s, more than {MAX_MEDIAN_LAG_SECONDS} s")
    for name in POLICIES[1:]:
        other = results.get(name)
        if other and median is not None and median >= other["lag_seconds"]["median"]:
            problems.append(f"median lag {median} s is not below the {name} baseline")
    if own["submissions"] != own["unique_objects"]:
        problems.append(
            f"{own['submissions']} submissions for {own['unique_objects']} "
            "unique objects"
        )
    url_events = own["history_events"].get("url", {}).get("max", 0)
    if url_events > MAX_URL_HISTORY_EVENTS:
        problems.append(f"a URL analysis has {url_events} history events")
    if own["not_done"]:
        problems.append(f"{own['not_done']} objects did not end done")
    return problems


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Return each baseline's calls per analysis and median lag over the policy's."""
    own = results["remaining"]
    out = {}
    for name in POLICIES[1:]:
        other = results.get(name)
        if not other:
            continue
        out[name] = {
            "calls_per_analysis": round(
                other["anyrun_calls_per_analysis_total"]
                / own["anyrun_calls_per_analysis_total"],
                2,
            ),
            "median_lag": round(
                other["lag_seconds"]["median"]
                / max(own["lag_seconds"]["median"], 0.01),
                2,
            ),
        }
    return out


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--incidents", type=int, default=500, help="incidents (default 500)"
    )
    parser.add_argument("--objects", type=int, default=3, help="objects per incident")
    parser.add_argument(
        "--repeat", type=float, default=0.3, help="share of objects that recur (0.3)"
    )
    parser.add_argument(
        "--files", type=int, default=3, help="files among the recurring objects (0-3)"
    )
    parser.add_argument(
        "--time-scale", type=float, default=10, help="durable seconds per wall second"
    )
    parser.add_argument(
        "--rate", type=float, default=12, help="incidents posted per durable minute"
    )
    parser.add_argument(
        "--parallel-limit",
        type=int,
        default=200,
        help="ANY.RUN emulator's parallel limit (default 200)",
    )
    parser.add_argument("--reuse-window-hours", type=int, default=24)
    parser.add_argument(
        "--policies",
        default=",".join(POLICIES),
        help="comma-separated STATUS_WAIT_POLICY values; remaining must come first",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="wall seconds to wait for the comments of one run",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--output", type=Path, default=RESULTS / "cost.json", help="figures as JSON"
    )
    args = parser.parse_args(argv)
    args.policies = [name.strip() for name in args.policies.split(",") if name.strip()]
    if not args.policies or args.policies[0] != "remaining":
        parser.error("--policies must start with remaining")
    unknown = set(args.policies) - set(POLICIES)
    if unknown:
        parser.error(f"unknown policies: {', '.join(sorted(unknown))}")
    if not 0 <= args.files <= len(FILE_SAMPLES):
        parser.error(f"--files must be between 0 and {len(FILE_SAMPLES)}")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every policy and return the figures, the ratios and the checks."""
    workload = build_workload(
        args.incidents, args.objects, args.repeat, args.files, args.seed
    )
    results = {}
    for policy in args.policies:
        print(
            f"running {args.incidents} incidents with the {policy} policy ...",
            flush=True,
        )
        with tempfile.TemporaryDirectory(prefix=f"bench-cost-{policy}-") as folder:
            results[policy] = run_policy(policy, workload, args, Path(folder))
        print(json.dumps(results[policy], indent=2), flush=True)
    return {
        "workload": {
            "incidents": args.incidents,
            "objects_per_incident": args.objects,
            "repeat": args.repeat,
            "files": args.files,
            "time_scale": args.time_scale,
            "rate_per_durable_minute": args.rate,
            "parallel_limit": args.parallel_limit,
            "reuse_window_hours": args.reuse_window_hours,
            "seed": args.seed,
        },
        "machine": f"{os.cpu_count()} cores",
        "python": sys.version.split()[0],
        "results": results,
        "ratios": ratios(results),
        "problems": check(results),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    figures = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(
        json.dumps(
            {"ratios": figures["ratios"], "problems": figures["problems"]}, indent=2
        )
    )
    return 1 if figures["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
