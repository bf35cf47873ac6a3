"""The corpus and the webhook property through devhost, the emulators and Azurite.

One local stack serves the module. Every request goes to the real
`POST /api/incidents` with the function key. A rejected request must leave
the number of enrichment instances unchanged, and an accepted one must add
exactly one (202) or none (200, the same incident and objects again). The
stack runs at time scale 1, so the enrichments that accepted cases start sit
on their durable timers instead of competing for the CPU.
"""

from datetime import timedelta

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings

from devhost.stack import LocalStack
from tests.corpus.cases import build
from tests.corpus.checks import case_params, expected_instance_id
from tests.corpus.strategies import webhook_requests

pytestmark = pytest.mark.e2e

CASES = build()
ERROR_STATUSES = {400, 413, 415}
CONTINUATION_HEADER = "x-ms-continuation-token"


@pytest.fixture(scope="module")
def http():
    """Return one client for the module.

    Each top-level httpx call builds a client and its TLS context, which costs
    more CPU than the request. trust_env=False keeps proxy settings away from
    requests to 127.0.0.1.
    """
    with httpx.Client(timeout=30, trust_env=False) as client:
        yield client


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with LocalStack(tmp_path_factory.mktemp("corpus-stack"), time_scale=1) as running:
        yield running
        # The enrichments that accepted cases started are still retrying
        # sandbox submissions, and devhost waits for them on SIGTERM. Its
        # state is thrown away, so it is killed at once.
        running.kill("devhost")


def enrichment_count(http, stack) -> int:
    """Count the enrichment instances, leaving out their sub-orchestrations.

    Sub-orchestration ids are `<parent id>:<object key>`, and enrichments that
    earlier cases started keep creating them while a case runs.
    """
    url = f"{stack.url('devhost')}/runtime/webhooks/durabletask/instances"
    count = 0
    token = None
    for _page in range(1000):
        headers = {CONTINUATION_HEADER: token} if token else {}
        response = http.get(url, params={"top": "500"}, headers=headers)
        response.raise_for_status()
        count += sum(1 for item in response.json() if ":" not in item["instanceId"])
        token = response.headers.get(CONTINUATION_HEADER)
        if not token:
            return count
    raise AssertionError("the instance list did not end after 1000 pages")


class EnrichmentCounter:
    """Counter of enrichment instances that reports how many each request added.

    Only the webhook creates enrichment instances, so the count after one
    request is the count before the next. That saves one listing per request.
    """

    def __init__(self, http, stack) -> None:
        self.http = http
        self.stack = stack
        self.last = enrichment_count(http, stack)

    def added(self) -> int:
        now = enrichment_count(self.http, self.stack)
        added, self.last = now - self.last, now
        return added


@pytest.fixture(scope="module")
def enrichments(http, stack):
    return EnrichmentCounter(http, stack)


def post(http, stack, payload: bytes, content_type: str | None) -> httpx.Response:
    headers = {"x-functions-key": stack.function_key}
    if content_type is not None:
        headers["content-type"] = content_type
    return http.post(
        f"{stack.url('devhost')}/api/incidents", content=payload, headers=headers
    )


@pytest.mark.parametrize("case", case_params(CASES, pending_fails=True))
def test_corpus_case_through_devhost(http, stack, enrichments, case):
    response = post(http, stack, case.payload, case.content_type)
    added = enrichments.added()
    if not case.accepted:
        assert response.status_code == case.status
        assert response.json()["field"] == case.field
        assert added == 0
        return
    assert response.status_code in (200, 202)
    assert response.json()["id"] == expected_instance_id(case)
    assert added == (1 if response.status_code == 202 else 0)


@settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=webhook_requests())
def test_webhook_property_through_devhost(http, stack, enrichments, request):
    response = post(http, stack, request.payload, request.content_type)
    added = enrichments.added()
    event(f"status {response.status_code}")
    assert response.status_code in ERROR_STATUSES | {200, 202}
    if response.status_code in ERROR_STATUSES:
        assert response.json()["field"]
        assert added == 0
    else:
        assert response.json()["id"].startswith("inc-")
        assert added == (1 if response.status_code == 202 else 0)
