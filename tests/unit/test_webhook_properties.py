"""Property: the incident webhook never returns 500 and starts only what it accepts.

Runs the real post_incident function in this process with a Durable client
that records start_new calls (tests/corpus/webhook.py). The same property
runs through devhost, with fewer examples, in tests/corpus/test_corpus_devhost.py.
"""

import json

from hypothesis import HealthCheck, event, given, settings

from enrichment.incident import InvalidIncident, extract
from tests.corpus import webhook
from tests.corpus.cases import MAX_OBJECTS
from tests.corpus.strategies import json_values, mutated_bodies, webhook_requests

SETTINGS = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ERROR_STATUSES = {400, 413, 415}


@SETTINGS
@given(request=webhook_requests())
def test_webhook_never_500_and_starts_only_accepted(request):
    result = webhook.post(request.payload, request.content_type)
    event(f"status {result.status}")
    assert result.status in ERROR_STATUSES | {202}
    if result.status in ERROR_STATUSES:
        assert result.started == []
        assert isinstance(result.body["field"], str)
        assert result.body["field"]
        assert result.body["message"]
        return
    assert len(result.started) == 1
    name, instance_id, plan = result.started[0]
    assert name == "enrich_incident"
    assert result.body["id"] == instance_id
    assert json.dumps(plan, ensure_ascii=False).encode("utf-8")


@SETTINGS
@given(body=json_values | mutated_bodies())
def test_extract_raises_only_invalid_incident(body):
    try:
        extraction = extract(body, MAX_OBJECTS)
    except InvalidIncident as error:
        assert str(error).startswith(f"{error.field}: ")
        assert error.fix.endswith(".")
        return
    assert len(extraction.objects) <= MAX_OBJECTS
    for item in extraction.objects + extraction.skipped:
        assert item["object"].encode("utf-8")
    for item in extraction.skipped:
        assert item["reason"]
