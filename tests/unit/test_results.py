"""Labels, the incident comment and STIX indicators built from results."""

from datetime import UTC, datetime

import pytest
import stix2

from enrichment.indicators import build_indicators, indicator_id, pattern_for
from enrichment.results import (
    COMMENT_LIMIT,
    comment_id,
    labels_for,
    merge_labels,
    render_comment,
    verdict_word,
)

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def done(obj, verdict, tags=(), iocs=()):
    return {
        "kind": "url",
        "object": obj,
        "status": "done",
        "verdict": verdict,
        "verdict_text": verdict.capitalize(),
        "score": 100,
        "task_id": "t-1",
        "task_url": "https://app.any.run/tasks/t-1",
        "tags": list(tags),
        "iocs": list(iocs),
        "indicator_iocs": list(iocs),
    }


@pytest.mark.parametrize(
    ("level", "text", "word"),
    [
        (2, None, "malicious"),
        (1, None, "suspicious"),
        (0, None, "clean"),
        (None, "Malicious activity", "malicious"),
        (None, "No threats detected", "clean"),
        (None, None, "unknown"),
    ],
)
def test_verdict_word(level, text, word):
    assert verdict_word(level, text) == word


def test_labels_worst_verdict_and_tags():
    results = [
        done("a", "suspicious", ["adware"]),
        done("b", "malicious", ["phishing"]),
    ]
    assert labels_for(results, "ANY.RUN") == [
        "ANY.RUN",
        "ANY.RUN: malicious",
        "ANY.RUN: adware",
        "ANY.RUN: phishing",
    ]


def test_labels_none_without_results():
    assert labels_for([{"status": "failed"}], "ANY.RUN") == []


def test_labels_strip_unsafe_characters():
    labels = labels_for([done("a", "malicious", ["<script>x"])], "ANY.RUN")
    assert "ANY.RUN: scriptx" in labels


def test_merge_keeps_existing_and_adds_new():
    existing = [{"labelName": "proxy", "labelType": "AutoAssigned"}]
    merged, added = merge_labels(existing, ["ANY.RUN", "proxy"])
    assert merged == [
        {"labelName": "proxy", "labelType": "AutoAssigned"},
        {"labelName": "ANY.RUN", "labelType": "User"},
    ]
    assert added == ["ANY.RUN"]


def test_merge_is_case_insensitive():
    _, added = merge_labels(
        [{"labelName": "any.run", "labelType": "User"}], ["ANY.RUN"]
    )
    assert added == []


def test_comment_lists_objects_and_escapes():
    results = [done("https://a.example.net/<b>", "malicious")]
    text = render_comment(
        results, [], indicators={"uploaded": 3}, labels=["ANY.RUN"], top_iocs=5
    )
    assert "hxxps://a[.]example[.]net/&lt;b&gt;" in text
    assert "https://app.any.run/tasks/t-1" in text
    assert "3 indicators written" in text
    assert "<b>" not in text.replace("<b>ANY.RUN sandbox analysis</b>", "")


def test_comment_reports_skipped_and_failed():
    failed = {
        "kind": "url",
        "object": "https://b/",
        "status": "timed_out",
        "reason": "deadline",
    }
    skipped = [
        {"kind": "url", "object": "ftp://x", "reason": "scheme 'ftp' is not analysed"}
    ]
    text = render_comment([failed], skipped, indicators=None, labels=[], top_iocs=5)
    assert "not analysed: deadline" in text
    assert "scheme &#x27;ftp&#x27; is not analysed" in text


def test_comment_fits_limit_with_many_objects():
    iocs = [
        {
            "type": "url",
            "value": f"https://x{i}.example/" + "p" * 200,
            "reputation": "malicious",
        }
        for i in range(10)
    ]
    results = [
        done(f"https://o{i}.example/" + "q" * 400, "malicious", iocs=iocs)
        for i in range(200)
    ]
    text = render_comment(results, [], indicators=None, labels=[], top_iocs=10)
    assert len(text) <= COMMENT_LIMIT
    assert "more objects left out" in text


def test_comment_id_is_stable():
    assert comment_id("inc-1") == comment_id("inc-1")
    assert comment_id("inc-1") != comment_id("inc-2")


@pytest.mark.parametrize(
    ("kind", "value", "pattern"),
    [
        ("ip", "203.0.113.45", "[ipv4-addr:value = '203.0.113.45']"),
        ("ip", "2001:db8::1", "[ipv6-addr:value = '2001:db8::1']"),
        ("domain", "Evil.Example.NET.", "[domain-name:value = 'evil.example.net']"),
        ("url", "http://a.example/it's", "[url:value = 'http://a.example/it\\'s']"),
        ("sha256", "A" * 64, f"[file:hashes.'SHA-256' = '{'a' * 64}']"),
        ("sha1", "b" * 40, f"[file:hashes.'SHA-1' = '{'b' * 40}']"),
        ("sha256", "z" * 64, None),
        ("ip", "not-an-ip", None),
        ("mutex", "Global\\x", None),
    ],
)
def test_pattern_for(kind, value, pattern):
    assert pattern_for(kind, value) == pattern


def test_indicators_filter_reputation_and_dedupe():
    iocs = [
        {"type": "domain", "value": "a.example.net", "reputation": "malicious"},
        {"type": "domain", "value": "b.example.net", "reputation": "suspicious"},
        {"type": "ip", "value": "198.51.100.7", "reputation": "unknown"},
    ]
    results = [done("x", "malicious", iocs=iocs), done("y", "malicious", iocs=iocs[:1])]
    built = build_indicators(
        results,
        reputations=["malicious"],
        valid_days=30,
        label_prefix="ANY.RUN",
        now=NOW,
    )
    assert [i["pattern"] for i in built] == ["[domain-name:value = 'a.example.net']"]
    assert built[0]["id"] == indicator_id("[domain-name:value = 'a.example.net']")


def test_indicators_are_valid_stix():
    iocs = [{"type": "url", "value": "http://a.example/x", "reputation": "suspicious"}]
    built = build_indicators(
        [done("x", "suspicious", iocs=iocs)],
        reputations=["malicious", "suspicious"],
        valid_days=7,
        label_prefix="ANY.RUN",
        now=NOW,
    )
    parsed = stix2.parse(built[0], allow_custom=False)
    assert parsed.confidence == 60
    assert parsed.valid_until == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
