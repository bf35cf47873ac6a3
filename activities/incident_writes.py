"""Write-back activities: STIX indicators, incident labels and the incident comment.

Each write is idempotent by construction: indicator ids come from their
patterns, labels are merged with the current ones under the incident's etag,
and the comment id comes from the orchestration instance.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import clients
from activities._blueprint import bp, require
from clients import errors
from clients.sentinel import STIX_BATCH_MAX
from enrichment.indicators import build_indicators
from enrichment.results import merge_labels, render_comment
from settings import current

log = logging.getLogger("connector.activities")

LABEL_ATTEMPTS = 5


@bp.activity_trigger(input_name="payload", activity="upload_indicators")
def upload_indicators(payload: dict[str, Any]) -> dict[str, Any]:
    """Upload malicious and suspicious IOCs as STIX indicators, 100 per request.

    Records that the API lists as failed in a 200 response are sent once more
    in a batch of their own, because a failure can be on the service's side.
    An invalid object fails again, and what still fails is reported with its
    messages.
    """
    request = require(payload, "workspace_id", "results", "options", allow_empty=True)
    options = request["options"]
    indicators = build_indicators(
        request["results"],
        reputations=options["indicator_reputations"],
        valid_days=options["indicator_valid_days"],
        label_prefix=options["label_prefix"],
        now=datetime.now(UTC),
    )
    workspace = request["workspace_id"]
    uploaded = 0
    problems: list[dict[str, Any]] = []
    retried = 0

    for start in range(0, len(indicators), STIX_BATCH_MAX):
        batch = indicators[start : start + STIX_BATCH_MAX]
        failed, partial = _upload_batch(workspace, batch)
        if failed and partial:
            retried += len(failed)
            failed, _ = _upload_batch(workspace, [item for item, _ in failed])
        uploaded += len(batch) - len(failed)
        problems.extend(
            {"pattern": item["pattern"], "error": error} for item, error in failed
        )

    if problems:
        log.warning(
            "indicators.partial workspace=%s uploaded=%d failed=%d retried=%d",
            workspace,
            uploaded,
            len(problems),
            retried,
        )
    log.info(
        "indicators.uploaded workspace=%s count=%d retried=%d",
        workspace,
        uploaded,
        retried,
    )
    return {"uploaded": uploaded, "failed": len(problems), "errors": problems[:20]}


def _upload_batch(
    workspace: str, batch: list[dict[str, Any]]
) -> tuple[list[tuple[dict[str, Any], str]], bool]:
    """Upload one batch and return its failed objects with their error text.

    The flag returned with them is True when the API listed the failures per
    record. A batch that the API rejected as a whole would be rejected again.
    """
    source = current().ti_source_system
    try:
        rejected = clients.threat_intelligence().upload(workspace, source, batch)
    except (
        errors.RejectedError,
        errors.AuthenticationError,
        errors.NotFoundError,
    ) as exc:
        log.error(
            "indicators.batch_failed workspace=%s size=%d error=%s",
            workspace,
            len(batch),
            exc,
        )
        return [(item, str(exc)) for item in batch], False
    failed = {}
    for entry in rejected:
        index = entry.get("recordIndex")
        if isinstance(index, int) and 0 <= index < len(batch):
            failed[index] = (
                "; ".join(str(m) for m in entry.get("errorMessages") or [])
                or "not stored"
            )
    return [(batch[index], error) for index, error in sorted(failed.items())], True


@bp.activity_trigger(input_name="payload", activity="update_incident_labels")
def update_incident_labels(payload: dict[str, Any]) -> dict[str, Any]:
    """Merge labels into the incident under its etag, re-reading on 409 conflicts."""
    request = require(payload, "incident_id", "labels", allow_empty=True)
    sentinel = clients.sentinel()
    wanted = list(request["labels"])
    if not wanted:
        return {"status": "unchanged", "labels": [], "added": []}

    for attempt in range(1, LABEL_ATTEMPTS + 1):
        try:
            incident = sentinel.get_incident(request["incident_id"])
        except errors.NotFoundError as exc:
            # A deleted incident stays deleted: report it instead of retrying.
            log.warning("labels.incident_missing incident=%s", request["incident_id"])
            return {"status": "failed", "reason": str(exc)}
        properties = dict(incident.get("properties") or {})
        merged, added = merge_labels(properties.get("labels") or [], wanted)
        if not added:
            return {
                "status": "unchanged",
                "labels": [x["labelName"] for x in merged],
                "added": [],
            }
        properties["labels"] = merged
        try:
            sentinel.put_incident(
                request["incident_id"], incident.get("etag"), properties
            )
        except errors.ConflictError:
            log.warning(
                "labels.conflict incident=%s attempt=%d",
                request["incident_id"],
                attempt,
            )
            continue
        log.info(
            "labels.updated incident=%s added=%d", request["incident_id"], len(added)
        )
        return {
            "status": "updated",
            "labels": [x["labelName"] for x in merged],
            "added": added,
            "attempts": attempt,
        }

    return {
        "status": "failed",
        "reason": f"the incident changed during {LABEL_ATTEMPTS} label updates (409)",
    }


@bp.activity_trigger(input_name="payload", activity="write_incident_comment")
def write_incident_comment(payload: dict[str, Any]) -> dict[str, Any]:
    """Render the results table and PUT it as the enrichment's single comment."""
    request = require(
        payload, "incident_id", "comment_id", "results", "skipped", allow_empty=True
    )
    message = render_comment(
        request["results"],
        request["skipped"],
        indicators=request.get("indicators"),
        labels=request.get("labels") or [],
        top_iocs=int(request.get("top_iocs", 5)),
    )
    try:
        clients.sentinel().put_comment(
            request["incident_id"], request["comment_id"], message
        )
    except (
        errors.RejectedError,
        errors.NotFoundError,
        errors.AuthenticationError,
    ) as exc:
        log.error("comment.failed incident=%s error=%s", request["incident_id"], exc)
        return {"status": "failed", "reason": str(exc)}
    log.info(
        "comment.written incident=%s comment=%s chars=%d",
        request["incident_id"],
        request["comment_id"],
        len(message),
    )
    return {
        "status": "written",
        "comment_id": request["comment_id"],
        "chars": len(message),
    }


def alert_comment(results: list[dict[str, Any]], marker: str) -> str:
    """Render the plain-text Defender alert comment: one line per object."""
    lines = ["ANY.RUN sandbox analysis:"]
    for result in results:
        if result.get("status") == "done":
            verdict = result.get("verdict_text") or result.get("verdict")
            lines.append(
                f"- {result.get('object')}: {verdict}, score {result.get('score')}, "
                f"{result.get('task_url')}"
            )
        else:
            lines.append(
                f"- {result.get('object')}: not analysed ({result.get('reason')})"
            )
    lines.append(f"[ANY.RUN enrichment {marker}]")
    return "\n".join(lines)[:10_000]


ALERT_COMMENT_ATTEMPTS = 3


def _comment_alert_once(defender, alert_id: str, text: str, tag: str) -> str:
    """Add `text` to the alert unless a comment with `tag` is there already.

    When a PATCH gets no response or a 5xx, it may still have added the comment,
    even after the client gave up. So the alert is read again one client
    timeout later, and the PATCH is sent again only if the tag is missing.
    Returns "already" or "commented"; raises the last error after the attempts.
    """
    for attempt in range(1, ALERT_COMMENT_ATTEMPTS + 1):
        existing = defender.get_alert(alert_id)
        notes = [str(c.get("comment") or "") for c in existing.get("comments") or []]
        if any(tag in note for note in notes):
            return "already" if attempt == 1 else "commented"
        try:
            defender.comment_alert(alert_id, text)
            return "commented"
        except (errors.TransportError, errors.ServerError) as exc:
            if attempt == ALERT_COMMENT_ATTEMPTS:
                raise
            settle = (
                0.0
                if getattr(exc, "not_sent", False)
                else current().http_timeout_seconds
            )
            log.warning(
                "alert.comment_unknown alert=%s attempt=%d wait=%.0fs error=%s",
                alert_id,
                attempt,
                settle,
                exc,
            )
            time.sleep(settle)
    raise AssertionError("unreachable")


@bp.activity_trigger(input_name="payload", activity="comment_defender_alerts")
def comment_defender_alerts(payload: dict[str, Any]) -> dict[str, Any]:
    """Comment each Defender alert of the incident once with its objects' verdicts.

    Defender appends alert comments, so the comment carries a marker and an
    alert that already has it is skipped: a redelivered activity adds nothing.
    """
    request = require(payload, "alerts", "results", "marker", allow_empty=True)
    defender = clients.defender()
    tag = f"[ANY.RUN enrichment {request['marker']}]"
    commented, skipped, failed = 0, 0, []

    for alert in request["alerts"]:
        host = (alert.get("host") or "").lower()
        own = [
            r
            for r in request["results"]
            if host
            and (r.get("host") or "").lower().split(".")[0] == host.split(".")[0]
        ]
        text = alert_comment(own or request["results"], request["marker"])
        try:
            outcome = _comment_alert_once(defender, alert["id"], text, tag)
            if outcome == "already":
                skipped += 1
            else:
                commented += 1
        except (
            errors.NotFoundError,
            errors.RejectedError,
            errors.AuthenticationError,
        ) as exc:
            log.warning("alert.comment_failed alert=%s error=%s", alert["id"], exc)
            failed.append({"alert": alert["id"], "reason": str(exc)})
    log.info(
        "alert.commented count=%d skipped=%d failed=%d", commented, skipped, len(failed)
    )
    return {
        "status": "written" if not failed else "partial",
        "commented": commented,
        "already": skipped,
        "failed": failed,
    }
