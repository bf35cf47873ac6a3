"""Sandbox activities: submit, check status, read the report and IOCs.

Answers the orchestrator must act on (quota reached, submission rejected, task
failed) come back as data with a `status` and a `reason`; transport faults and
5xx that outlast the client's own retries are raised, so that
`call_activity_with_retry` runs the activity again.
"""

from __future__ import annotations

import logging
from typing import Any

from azure.core.exceptions import HttpResponseError

import clients
from activities import records
from activities._blueprint import bp, require
from activities.submission import submit_once
from clients import errors
from enrichment.results import verdict_word

log = logging.getLogger("connector.activities")

REPUTATIONS = {0: "unknown", 1: "suspicious", 2: "malicious"}
TASK_LINK = "https://app.any.run/tasks/{}"
# Wall seconds a status check may follow the monitor stream of a task that
# is about to end (the remaining-time policy's checks ask for it).
STREAM_FOLLOW_SECONDS = 20


@bp.activity_trigger(input_name="payload", activity="submit_url_analysis")
def submit_url_analysis(payload: dict[str, Any]) -> dict[str, Any]:
    """Submit a URL once: reuse a standing analysis, wait for a slot, or POST it."""
    request = require(payload, "url", "tag", "options")
    sandbox = clients.anyrun()
    return submit_once(
        request,
        lambda: sandbox.submit_url(request["url"], request["options"], request["tag"]),
    )


@bp.activity_trigger(input_name="payload", activity="reserve_analysis")
def reserve_analysis(payload: dict[str, Any]) -> dict[str, Any]:
    """Claim an object's analysis record before its file is fetched.

    Returns "owned" (fetch and submit it), "reused" (another incident's task)
    or "pending" (another incident is fetching or submitting it).
    """
    request = require(payload, "record")
    table = clients.analysis_table()
    if table is None:
        return {"status": "owned"}
    claimed = records.claim(
        table, records.RecordRequest.from_payload(request["record"])
    )
    if claimed.status == "owned":
        return {"status": "owned", "task_id": claimed.task_id}
    return claimed.answer()


@bp.activity_trigger(input_name="payload", activity="release_analysis")
def release_analysis(payload: dict[str, Any]) -> dict[str, Any]:
    """Drop a claim whose object was never submitted (its file was not fetched)."""
    request = require(payload, "key", "owner")
    table = clients.analysis_table()
    if table is None:
        return {"released": False}
    released = records.drop_claim(table, request["key"], request["owner"])
    records.release_slot(table, request["owner"])
    return {"released": released}


def _finish(release: dict[str, Any] | None, state: str) -> None:
    """Free the owner's slot and mark or drop its record once its task has ended."""
    table = clients.analysis_table()
    if not release or table is None:
        return
    try:
        records.release_slot(table, release["owner"], release.get("slot"))
        if release.get("key"):
            records.finish_record(
                table, release["key"], release["owner"], done=state == "done"
            )
    except (HttpResponseError, records.RecordConflict) as exc:
        # The slot expires at the analysis deadline anyway.
        log.warning(
            "records.release_failed owner=%s error=%s", release.get("owner"), exc
        )


@bp.activity_trigger(input_name="payload", activity="check_analysis")
def check_analysis(payload: dict[str, Any]) -> dict[str, Any]:
    """Return the task's state (running, done, failed) and seconds remaining.

    With `follow`, a task that ends within STREAM_FOLLOW_SECONDS is followed
    on the monitor stream until it ends, so that its end is seen at once
    instead of at the next durable timer.

    With `release` (the owner's record key and instance id), a task that has
    ended frees its sandbox slot and marks its record done, or drops it when
    the task failed.
    """
    request = require(payload, "task_id")
    follow = STREAM_FOLLOW_SECONDS if request.get("follow") else 0
    try:
        status = clients.anyrun().get_status(request["task_id"], follow_seconds=follow)
    except errors.NotFoundError as exc:
        status = {"state": "failed", "remaining": 0, "reason": str(exc)}
    if status["state"] in ("done", "failed"):
        _finish(request.get("release"), status["state"])
    return status


def _ioc_items(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    items = []
    seen = set()
    for entry in raw:
        value = str(entry.get("ioc") or "").strip()
        kind = str(entry.get("type") or "").strip().lower()
        if not value or not kind or (kind, value) in seen:
            continue
        seen.add((kind, value))
        try:
            level = int(entry.get("reputation", 0))
        except (TypeError, ValueError):
            level = 0
        items.append(
            {
                "type": kind,
                "value": value[:1000],
                "reputation": REPUTATIONS.get(level, "unknown"),
                "level": level,
            }
        )
    items.sort(key=lambda item: (-item["level"], item["type"], item["value"]))
    return items


def summarise_report(
    task_id: str,
    data: dict[str, Any],
    raw_iocs: list[dict[str, Any]],
    *,
    reputations: list[str],
    top: int,
) -> dict[str, Any]:
    """Condense a report and its IOCs into what the writers need."""
    analysis = data.get("analysis") or {}
    verdict = (analysis.get("scores") or {}).get("verdict") or {}
    tags = []
    for tag in analysis.get("tags") or []:
        name = tag.get("tag") if isinstance(tag, dict) else tag
        if isinstance(name, str) and name and name not in tags:
            tags.append(name)
    mitre = []
    for technique in data.get("mitre") or []:
        if isinstance(technique, dict) and technique.get("id"):
            mitre.append({"id": technique["id"], "name": technique.get("name", "")})
    iocs = _ioc_items(raw_iocs)
    return {
        "task_id": task_id,
        "task_url": analysis.get("permanentUrl") or TASK_LINK.format(task_id),
        "verdict": verdict_word(
            verdict.get("threatLevel"), verdict.get("threatLevelText")
        ),
        "verdict_text": verdict.get("threatLevelText") or "",
        "threat_level": verdict.get("threatLevel"),
        "score": verdict.get("score"),
        "tags": tags[:20],
        "mitre": mitre[:30],
        "ioc_count": len(iocs),
        "iocs": [
            {k: v for k, v in item.items() if k != "level"} for item in iocs[:top]
        ],
        "indicator_iocs": [
            {k: v for k, v in item.items() if k != "level"}
            for item in iocs
            if item["reputation"] in reputations
        ][:500],
    }


@bp.activity_trigger(input_name="payload", activity="fetch_analysis_report")
def fetch_analysis_report(payload: dict[str, Any]) -> dict[str, Any]:
    """Read the finished task's report and IOC list and return their summary."""
    request = require(payload, "task_id")
    task_id = request["task_id"]
    sandbox = clients.anyrun()
    try:
        data = sandbox.get_report(task_id)
        raw_iocs = sandbox.get_iocs(task_id)
    except errors.NotFoundError as exc:
        # The sandbox can return 404 for a report that is not ready yet. Only a
        # task that the monitor does not find either is really gone.
        if _task_known(sandbox, task_id):
            log.info("report.not_ready task=%s", task_id)
            return {"status": "not_ready", "reason": str(exc), "task_id": task_id}
        return _report_failed(task_id, str(exc))
    except errors.RejectedError as exc:
        return _report_failed(task_id, str(exc))
    summary = summarise_report(
        task_id,
        data,
        raw_iocs,
        reputations=list(request.get("reputations") or ["malicious", "suspicious"]),
        top=int(request.get("top_iocs", 5)),
    )
    return {"status": "done", **summary}


def _task_known(sandbox: Any, task_id: str) -> bool:
    """Tell whether the monitor finds the task and does not report it failed."""
    try:
        status = sandbox.get_status(task_id)
    except errors.NotFoundError:
        return False
    return status["state"] != "failed"


def _report_failed(task_id: str, reason: str) -> dict[str, Any]:
    return {
        "status": "failed",
        "reason": reason,
        "task_id": task_id,
        "task_url": TASK_LINK.format(task_id),
    }
