"""Results written back to Sentinel: labels, the incident comment and identifiers.

Everything here is pure: ids are derived from their inputs so that a replayed
or redelivered write replaces what it wrote before instead of adding a copy.
"""

from __future__ import annotations

import hashlib
import html
import re
import uuid
from typing import Any

from enrichment.urls import defang

COMMENT_LIMIT = 30_000

# Namespace of every id this connector derives (comments, indicators, tags).
NAMESPACE = uuid.UUID("5b0f1c4e-6d0a-4f5e-9a57-7d3c2a6b8e21")

VERDICT_RANK = {"malicious": 3, "suspicious": 2, "clean": 1, "unknown": 0}

_LABEL_UNSAFE = re.compile(r"[^\w .:/-]+")


def idempotency_tag(sub_instance_id: str) -> str:
    """Return the 16-character ANY.RUN user tag that marks one submission."""
    return "snt-" + hashlib.sha256(sub_instance_id.encode()).hexdigest()[:12]


def comment_id(parent_instance_id: str) -> str:
    """Return the incident comment id of one enrichment (one comment per instance)."""
    return str(uuid.uuid5(NAMESPACE, f"comment:{parent_instance_id}"))


def verdict_word(threat_level: Any, text: str | None) -> str:
    """Map ANY.RUN's threat level (0, 1, 2) or its text to a verdict word."""
    if threat_level in (2, "2"):
        return "malicious"
    if threat_level in (1, "1"):
        return "suspicious"
    if threat_level in (0, "0"):
        return "clean"
    lowered = (text or "").lower()
    if "malicious" in lowered:
        return "malicious"
    if "suspicious" in lowered:
        return "suspicious"
    if "no threats" in lowered:
        return "clean"
    return "unknown"


def labels_for(results: list[dict[str, Any]], prefix: str) -> list[str]:
    """Return the labels the results call for: prefix, worst verdict, sandbox tags."""
    done = [r for r in results if r.get("status") == "done"]
    if not done:
        return []
    labels = [prefix]
    worst = max(done, key=lambda r: VERDICT_RANK.get(r.get("verdict", "unknown"), 0))
    labels.append(f"{prefix}: {worst.get('verdict', 'unknown')}")
    for result in done:
        for tag in result.get("tags") or []:
            labels.append(f"{prefix}: {tag}")
    clean = []
    for label in labels:
        text = _LABEL_UNSAFE.sub("", label).strip()[:128]
        if text and text.lower() not in {c.lower() for c in clean}:
            clean.append(text)
    return clean


def merge_labels(
    existing: list[dict[str, Any]], wanted: list[str]
) -> tuple[list[dict], list[str]]:
    """Merge wanted label names into the incident's labels; return (labels, added)."""
    merged = [
        dict(label)
        for label in existing
        if isinstance(label, dict) and label.get("labelName")
    ]
    names = {label["labelName"].lower() for label in merged}
    added = []
    for name in wanted:
        if name.lower() not in names:
            merged.append({"labelName": name, "labelType": "User"})
            names.add(name.lower())
            added.append(name)
    return merged, added


def _cell(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _object_cell(result: dict[str, Any]) -> str:
    if result.get("kind") == "url":
        return f"<code>{_cell(defang(result.get('object', '')))}</code>"
    return f"<code>{_cell(result.get('object', ''))}</code>"


def _ioc_cell(result: dict[str, Any], top: int) -> str:
    iocs = (result.get("iocs") or [])[:top]
    items = []
    for ioc in iocs:
        value = ioc.get("value", "")
        if ioc.get("type") in ("url", "domain"):
            value = (
                defang(value) if ioc.get("type") == "url" else value.replace(".", "[.]")
            )
        items.append(
            f"{_cell(ioc.get('type'))}: {_cell(value)} ({_cell(ioc.get('reputation'))})"
        )
    more = len(result.get("iocs") or []) - len(iocs)
    if more > 0:
        items.append(f"and {more} more")
    return "<br>".join(items) or "-"


def _row(result: dict[str, Any], top: int) -> str:
    if result.get("status") == "done":
        verdict = _cell(result.get("verdict_text") or result.get("verdict"))
        score = _cell(result.get("score", "-"))
        link = result.get("task_url")
        task = (
            f'<a href="{_cell(link)}">{_cell(result.get("task_id"))}</a>'
            if link
            else "-"
        )
        iocs = _ioc_cell(result, top)
    else:
        verdict = f"not analysed: {_cell(result.get('reason') or result.get('status'))}"
        score = "-"
        link = result.get("task_url")
        task = (
            f'<a href="{_cell(link)}">{_cell(result.get("task_id"))}</a>'
            if link
            else "-"
        )
        iocs = "-"
    return (
        f"<tr><td>{_object_cell(result)}</td><td>{verdict}</td><td>{score}</td>"
        f"<td>{task}</td><td>{iocs}</td></tr>"
    )


def render_comment(
    results: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
    *,
    indicators: dict[str, Any] | None,
    labels: list[str],
    top_iocs: int,
    limit: int = COMMENT_LIMIT,
) -> str:
    """Render the incident comment as an HTML table, within Sentinel's size limit.

    When the table would be too long, IOC cells shrink first, then trailing
    rows are replaced by a line giving how many were left out.
    """
    for top in (top_iocs, 2, 0):
        text = _render(results, skipped, indicators, labels, top, len(results))
        if len(text) <= limit:
            return text
    shown = len(results)
    while shown > 0:
        shown -= 1
        text = _render(results, skipped, indicators, labels, 0, shown)
        if len(text) <= limit:
            return text
    return text[: limit - 20] + "</p>(truncated)"


def _render(results, skipped, indicators, labels, top, shown) -> str:
    parts = [
        "<p><b>ANY.RUN sandbox analysis</b></p>",
        "<table><tr><th>Object</th><th>Verdict</th><th>Score</th>"
        "<th>Task</th><th>Top IOCs</th></tr>",
    ]
    parts.extend(_row(result, top) for result in results[:shown])
    parts.append("</table>")
    if shown < len(results):
        parts.append(
            f"<p>{len(results) - shown} more objects left out to fit the comment.</p>"
        )
    if skipped:
        items = "".join(
            f"<li><code>{_cell(item['object'][:200])}</code>: "
            f"{_cell(item['reason'])}</li>"
            for item in skipped[:50]
        )
        more = f"<li>and {len(skipped) - 50} more</li>" if len(skipped) > 50 else ""
        parts.append(f"<p>Not analysed:</p><ul>{items}{more}</ul>")
    if indicators is not None:
        parts.append(
            "<p>Threat intelligence: "
            f"{indicators.get('uploaded', 0)} indicators written"
            + (
                f", {indicators.get('failed')} rejected"
                if indicators.get("failed")
                else ""
            )
            + ".</p>"
        )
    if labels:
        parts.append(f"<p>Labels: {_cell(', '.join(labels))}</p>")
    return "".join(parts)
