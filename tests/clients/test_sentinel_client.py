"""Sentinel and TI client tests on httpx.MockTransport handlers."""

import json

import httpx
import pytest

from clients import errors
from clients.credentials import (
    TOKEN_RENEWALS,
    LocalTokenCredential,
    StaticTokenCredential,
    TokenProvider,
)
from clients.sentinel import SentinelClient, ThreatIntelligenceClient

INCIDENT = (
    "/subscriptions/s/resourceGroups/r/providers/Microsoft.OperationalInsights/"
    "workspaces/w/providers/Microsoft.SecurityInsights/Incidents/i-1"
)
TOKEN = "static-token-for-tests"


def tokens():
    return TokenProvider(
        StaticTokenCredential(TOKEN), "https://management.azure.com/.default"
    )


def sentinel(handler):
    return SentinelClient(
        "http://127.0.0.1:9",
        tokens(),
        api_version="2025-09-01",
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
    )


def ti(handler):
    return ThreatIntelligenceClient(
        "http://127.0.0.1:9",
        tokens(),
        api_version="2024-02-01-preview",
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
    )


def test_get_incident_sends_token_and_version():
    seen = {}

    def handler(request):
        seen["auth"] = request.headers["Authorization"]
        seen["version"] = request.url.params["api-version"]
        seen["path"] = request.url.path
        return httpx.Response(200, json={"etag": '"1"', "properties": {"labels": []}})

    assert sentinel(handler).get_incident(INCIDENT)["etag"] == '"1"'
    assert seen["auth"] == f"Bearer {TOKEN}"
    assert seen["version"] == "2025-09-01"
    assert seen["path"] == INCIDENT


def test_put_incident_409_is_conflict():
    def handler(request):
        body = {
            "error": {"code": "Conflict", "message": "New version of resource exists"}
        }
        return httpx.Response(409, json=body)

    with pytest.raises(errors.ConflictError) as caught:
        sentinel(handler).put_incident(INCIDENT, '"old"', {"title": "t"})
    assert caught.value.code == "Conflict"


def test_put_incident_sends_etag():
    seen = {}

    def handler(request):
        seen.update(json.loads(request.content))
        return httpx.Response(200, json={"etag": '"2"'})

    sentinel(handler).put_incident(INCIDENT, '"1"', {"title": "t"})
    assert seen["etag"] == '"1"'
    assert seen["properties"] == {"title": "t"}


def test_put_comment_path_and_body():
    seen = {}

    def handler(request):
        seen["path"] = request.url.path
        seen["body"] = json.loads(request.content)
        return httpx.Response(201, json={"name": "c-1"})

    sentinel(handler).put_comment(INCIDENT, "c-1", "<p>hi</p>")
    assert seen["path"] == f"{INCIDENT}/comments/c-1"
    assert seen["body"] == {"properties": {"message": "<p>hi</p>"}}


def test_put_comment_over_limit_is_refused_locally():
    def handler(request):
        raise AssertionError("must not be sent")

    with pytest.raises(ValueError, match="30000"):
        sentinel(handler).put_comment(INCIDENT, "c", "x" * 30_001)


def test_ti_upload_returns_partial_errors():
    def handler(request):
        body = json.loads(request.content)
        assert body["sourcesystem"] == "ANY.RUN Sandbox"
        assert len(body["stixobjects"]) == 2
        return httpx.Response(
            200, json={"errors": [{"recordIndex": 1, "errorMessages": ["bad pattern"]}]}
        )

    rejected = ti(handler).upload("ws", "ANY.RUN Sandbox", [{"id": "a"}, {"id": "b"}])
    assert rejected == [{"recordIndex": 1, "errorMessages": ["bad pattern"]}]


def test_ti_upload_empty_answer_means_no_errors():
    assert (
        ti(lambda request: httpx.Response(200)).upload("ws", "s", [{"id": "a"}]) == []
    )


def test_ti_upload_batch_limit():
    with pytest.raises(ValueError, match="1 to 100"):
        ti(lambda request: httpx.Response(200)).upload("ws", "s", [{}] * 101)


def test_ti_429_waits_then_retries():
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "1"}, json={"statusCode": 429}),
            httpx.Response(200, json={}),
        ]
    )
    assert ti(lambda request: next(answers)).upload("ws", "s", [{"id": "a"}]) == []


def test_token_is_cached():
    calls = []

    class Counting(StaticTokenCredential):
        def get_token(self, *scopes, **kwargs):
            calls.append(scopes)
            return super().get_token(*scopes, **kwargs)

    provider = TokenProvider(Counting(TOKEN), "scope")
    provider.header()
    provider.header()
    assert len(calls) == 1


def test_local_credential_issues_a_new_token_each_time():
    credential = LocalTokenCredential("local-base")
    first = credential.get_token("scope").token
    second = credential.get_token("scope").token
    assert first != second
    for token in (first, second):
        base, suffix = token.split(".", 1)
        assert base == "local-base"
        assert len(suffix) >= 8


@pytest.mark.parametrize("which", ["incident", "ti"])
def test_401_renews_the_token_once(which):
    """An expired token gets one retry with a new token from the credential."""
    seen = []

    def handler(request):
        seen.append(request.headers["Authorization"])
        if len(seen) == 1:
            return httpx.Response(
                401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                json={"error": {"code": "AuthenticationFailed", "message": "expired"}},
            )
        if which == "ti":
            return httpx.Response(200)
        return httpx.Response(200, json={"name": "i-1", "etag": "e"})

    provider = TokenProvider(LocalTokenCredential("local-base"), "scope")
    kwargs = {"transport": httpx.MockTransport(handler), "sleep": lambda s: None}
    if which == "ti":
        client = ThreatIntelligenceClient(
            "http://127.0.0.1:9", provider, api_version="v", **kwargs
        )
        assert client.upload("ws", "src", [{"id": "a"}]) == []
    else:
        client = SentinelClient(
            "http://127.0.0.1:9", provider, api_version="v", **kwargs
        )
        assert client.get_incident(INCIDENT)["etag"] == "e"
    assert len(seen) == 2
    assert seen[0] != seen[1]
    assert all(header.startswith("Bearer local-base.") for header in seen)


def test_401_after_every_renewal_is_raised():
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(
            401, json={"error": {"code": "AuthenticationFailed", "message": "no"}}
        )

    with pytest.raises(errors.AuthenticationError):
        sentinel(handler).get_incident(INCIDENT)
    assert len(calls) == TOKEN_RENEWALS + 1


def test_two_expired_tokens_renewed():
    """Another thread can drop the token a call renewed; the call renews again."""
    seen = []

    def handler(request):
        seen.append(request.headers["Authorization"])
        if len(seen) <= 2:
            return httpx.Response(
                401, json={"error": {"code": "AuthenticationFailed", "message": "x"}}
            )
        return httpx.Response(200, json={"name": "i-1", "etag": "e"})

    provider = TokenProvider(LocalTokenCredential("local-base"), "scope")
    client = SentinelClient(
        "http://127.0.0.1:9",
        provider,
        api_version="v",
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
    )
    assert client.get_incident(INCIDENT)["etag"] == "e"
    assert len(set(seen)) == 3
