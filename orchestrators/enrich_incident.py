"""Parent orchestration: fan out one sub-orchestration per object, then write results.

Input is the plan the webhook built (incident reference, objects, skipped
objects, options); nothing here reads settings or the clock directly. The
writes run one after another, indicators first so that the comment can give
their count, because parallel comment and label writes make Sentinel answer
409 more often.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from enrichment.results import comment_id, labels_for
from orchestrators.analyze_url import ACTIVITY_RETRY, failure_reason

bp = df.Blueprint()

SUB_ORCHESTRATOR = {"url": "analyze_url", "file": "analyze_file"}
FILE_FIELDS = (
    "file_name",
    "directory",
    "sha256",
    "sha1",
    "device_id",
    "host_name",
    "host_fqdn",
    "os_family",
)


def child_instance_id(parent_id: str, key: str) -> str:
    return f"{parent_id}:{key}"


def child_input(item: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Build a sub-orchestration's input from its object and the options."""
    job = {
        "key": item["key"],
        "kind": item["kind"],
        "object": item["object"],
        "options": options,
    }
    if item["kind"] == "file":
        job["file"] = {name: item.get(name) for name in FILE_FIELDS}
    return job


def _public(result: dict[str, Any]) -> dict[str, Any]:
    """Drop the bulky indicator list from a result before output and comment."""
    return {k: v for k, v in result.items() if k != "indicator_iocs"}


def _collect(tasks, objects):
    """Wait for every child; a failed child becomes a failed result, not a failure."""
    results = []
    for task, item in zip(tasks, objects, strict=True):
        try:
            results.append((yield task))
        except Exception as exc:  # noqa: BLE001 - 1.x raises plain Exception
            results.append(
                {
                    **item,
                    "status": "failed",
                    "reason": f"analysis crashed: {failure_reason(exc)}",
                }
            )
    return results


def _write(context, name: str, payload: dict[str, Any]):
    try:
        return (yield context.call_activity_with_retry(name, ACTIVITY_RETRY, payload))
    except Exception as exc:  # noqa: BLE001
        return {"status": "failed", "reason": failure_reason(exc)}


@bp.orchestration_trigger(context_name="context", orchestration="enrich_incident")
def enrich_incident(context: df.DurableOrchestrationContext):
    plan = context.get_input()
    incident = plan["incident"]
    options = plan["options"]
    objects = plan["objects"]
    skipped = plan.get("skipped") or []

    context.set_custom_status(
        {"stage": "analysing", "objects": len(objects), "skipped": len(skipped)}
    )
    tasks = [
        context.call_sub_orchestrator(
            SUB_ORCHESTRATOR[item["kind"]],
            child_input(item, options),
            instance_id=child_instance_id(context.instance_id, item["key"]),
        )
        for item in objects
    ]
    results = []
    if tasks:
        try:
            results = yield context.task_all(tasks)
        except Exception:  # noqa: BLE001 - fall back to waiting child by child
            results = yield from _collect(tasks, objects)

    output: dict[str, Any] = {
        "incident": {k: incident[k] for k in ("id", "number", "title")},
        "objects": [_public(r) for r in results],
        "skipped": skipped,
    }
    if not results and not skipped:
        context.set_custom_status({"stage": "done", "objects": 0})
        output["writes"] = {
            "comment": "skipped: the incident has no URL or file entities"
        }
        return output

    context.set_custom_status({"stage": "writing"})
    indicators = None
    if any(r.get("indicator_iocs") for r in results):
        indicators = yield from _write(
            context,
            "upload_indicators",
            {
                "workspace_id": incident["workspace_id"],
                "results": results,
                "options": options,
            },
        )
    labels = labels_for(results, options["label_prefix"])
    label_result = {"status": "unchanged", "labels": [], "added": []}
    if labels:
        label_result = yield from _write(
            context,
            "update_incident_labels",
            {"incident_id": incident["id"], "labels": labels},
        )
    comment = yield from _write(
        context,
        "write_incident_comment",
        {
            "incident_id": incident["id"],
            "comment_id": comment_id(context.instance_id),
            "results": output["objects"],
            "skipped": skipped,
            "indicators": indicators,
            "labels": labels,
            "top_iocs": options["comment_top_iocs"],
        },
    )

    alerts = plan.get("alerts") or []
    alert_result = {"status": "skipped", "commented": 0}
    if alerts:
        alert_result = yield from _write(
            context,
            "comment_defender_alerts",
            {
                "alerts": alerts,
                "results": output["objects"],
                "marker": comment_id(context.instance_id),
            },
        )

    output["labels"] = labels
    output["indicators"] = indicators or {"uploaded": 0, "failed": 0, "errors": []}
    output["writes"] = {
        "labels": label_result,
        "comment": comment,
        "alerts": alert_result,
    }
    context.set_custom_status({"stage": "done", "objects": len(results)})
    return output
