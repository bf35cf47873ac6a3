"""Sandbox activities: submit, check status, read the report and IOCs.

Answers the orchestrator must act on (quota reached, submission rejected, task
failed) come back as data with a `status` and a `reason`; transport faults and
5xx that outlast the client's own retries are raised, so that
`call_activity_with_retry` runs the activity again.
"""

from __future__ import annotations

import logging
from typing import Any

import clients
from activities._blueprint import bp, require
from clients import errors
from enrichment.results import verdict_word

log = logging.getLogger("connector.activities")

REPUTATIONS = {0: "unknown", 1: "suspicious", 2: "malicious"}
TASK_LINK = "https://app.any.run/tasks/{}"


@bp.activity_trigger(input_name="payload", activity="submit_url_analysis")
def submit_url_analysis(payload: dict[str, Any]) -> dict[str, Any]:
    """Submit a URL unless a task with this submission's tag already exists."""
    request = require(payload, "url", "tag", "options")
    sandbox = clients.anyrun()
    tag = request["tag"]

    try:
        existing = sandbox.find_task_by_tag(tag)
        if existing:
            log.info("analysis.reused tag=%s task=%s", tag, existing)
            return {"status": "submitted", "task_id": existing, "reused": True}
        task_id = sandbox.submit_url(request["url"], request["options"], tag)
    except errors.QuotaExceededError as exc:
        log.warning("analysis.quota tag=%s error=%s", tag, exc)
        return {
            "status": "throttled",
            "reason": exc.api_message or "sandbox quota reached",
            "retry_after": exc.retry_after,
        }
    except errors.RejectedError as exc:
        log.warning("analysis.rejected tag=%s error=%s", tag, exc)
        return {"status": "rejected", "reason": str(exc)}
    except errors.AuthenticationError as exc:
        log.error("analysis.unauthorized tag=%s error=%s", tag, exc)
        return {"status": "rejected", "reason": f"{exc} (check ANYRUN_API_KEY)"}

    log.info("analysis.submitted tag=%s task=%s", tag, task_id)
    return {"status": "submitted", "task_id": task_id, "reused": False}


@bp.activity_trigger(input_name="payload", activity="check_analysis")
def check_analysis(payload: dict[str, Any]) -> dict[str, Any]:
    """Return the task's state (running, done, failed) and seconds remaining."""
    request = require(payload, "task_id")
    try:
        return clients.anyrun().get_status(request["task_id"])
    except errors.NotFoundError as exc:
        return {"state": "failed", "remaining": 0, "reason": str(exc)}


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
    except (errors.RejectedError, errors.NotFoundError) as exc:
        return {
            "status": "failed",
            "reason": str(exc),
            "task_id": task_id,
            "task_url": TASK_LINK.format(task_id),
        }
    summary = summarise_report(
        task_id,
        data,
        raw_iocs,
        reputations=list(request.get("reputations") or ["malicious", "suspicious"]),
        top=int(request.get("top_iocs", 5)),
    )
    return {"status": "done", **summary}
