"""Assertions shared by the corpus tests at every level."""

from __future__ import annotations

from typing import Any

import pytest

from enrichment.incident import Extraction, extract, instance_id
from tests.corpus.cases import MAX_OBJECTS, Case


def case_params(cases: list[Case], *, pending_fails: bool) -> list[Any]:
    """Return pytest params, one per case, named after it.

    With pending_fails, a case that waits for a webhook change is a strict
    xfail, so the test fails as soon as the change lands and the mark must go.
    """
    params = []
    for case in cases:
        marks = []
        if pending_fails and case.pending:
            marks.append(pytest.mark.xfail(reason=case.pending, strict=True))
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


def expected_instance_id(case: Case) -> str:
    extraction = extract(case.body, MAX_OBJECTS)
    return instance_id(extraction.incident, extraction.object_keys())


def _summary(skipped: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(item["object"][:80], item["reason"][:120]) for item in skipped[:5]]


def check_extraction(extraction: Extraction, case: Case) -> None:
    """Assert the analysable objects, skipped objects and alerts of a case."""
    found = sorted(item["object"] for item in extraction.objects)
    assert found == sorted(case.objects)

    remaining = list(extraction.skipped)
    for shown_object, fragment in case.skipped:
        match = next(
            (
                item
                for item in remaining
                if item["object"] == shown_object and fragment in item["reason"]
            ),
            None,
        )
        assert match is not None, (
            f"no skipped {shown_object[:80]!r} with a reason containing "
            f"{fragment!r}; left: {_summary(remaining)}"
        )
        remaining.remove(match)
    assert remaining == [], f"unexpected skips: {_summary(remaining)}"

    assert len(extraction.alerts) == case.alerts

    by_object = {item["object"]: item for item in extraction.objects}
    for shown_object, key, value in case.attributes:
        assert by_object[shown_object][key] == value, (shown_object, key)
