"""The corpus against the validator and the real webhook function, in process.

Every case runs through `extract` and `unwrap` directly, and then through
`post_incident` with a recording Durable client (tests/corpus/webhook.py),
which also covers the content type, size and JSON checks that come before
the validator.
"""

import json

import pytest

from enrichment.incident import InvalidIncident, extract, unwrap
from tests.corpus import webhook
from tests.corpus.cases import MAX_OBJECTS, build, incident_name
from tests.corpus.checks import case_params, check_extraction, expected_instance_id

CASES = build()
JSON_CASES = [case for case in CASES if case.is_json]
RAW_CASES = [case for case in CASES if not case.is_json]
WRAPPER_FIELDS = {"$", "Body", "body", "Body.Body"}


def test_corpus_size():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", case_params(JSON_CASES, pending_fails=False))
def test_extract_outcome(case):
    if case.status != 400:
        # 202, and also 413 and 415: the webhook rejects those before the
        # validator, but the body itself is valid.
        check_extraction(extract(case.body, MAX_OBJECTS), case)
        return
    with pytest.raises(InvalidIncident) as caught:
        extract(case.body, MAX_OBJECTS)
    error = caught.value
    assert error.field == case.field
    assert str(error).startswith(f"{case.field}: ")
    assert error.fix.endswith(".")
    if case.message:
        assert case.message in str(error)


@pytest.mark.parametrize("case", case_params(JSON_CASES, pending_fails=False))
def test_unwrap_outcome(case):
    try:
        trigger = unwrap(case.body)
    except InvalidIncident as error:
        assert error.field == case.field
        assert error.field in WRAPPER_FIELDS
        return
    assert isinstance(trigger, dict)
    if case.status != 400:
        assert trigger["object"]["name"] == incident_name(case.name)


@pytest.mark.parametrize("case", case_params(RAW_CASES, pending_fails=False))
def test_raw_payload_is_not_json(case):
    with pytest.raises((ValueError, RecursionError)):
        json.loads(case.payload.decode("utf-8"))


@pytest.mark.parametrize("case", case_params(CASES, pending_fails=True))
def test_webhook_in_process(case):
    result = webhook.post(case.payload, case.content_type)
    assert result.status == case.status
    if not case.accepted:
        assert result.body["field"] == case.field
        assert result.started == []
        return
    iid = expected_instance_id(case)
    assert result.body["id"] == iid
    assert [(name, started_id) for name, started_id, _ in result.started] == [
        ("enrich_incident", iid)
    ]
    plan = result.started[0][2]
    # The plan travels as UTF-8 JSON to the orchestration and on to Sentinel.
    assert json.dumps(plan, ensure_ascii=False).encode("utf-8")
