"""Defender client tests on httpx.MockTransport handlers."""

import json

import httpx
import pytest

from clients import errors
from clients.credentials import StaticTokenCredential, TokenProvider
from clients.defender import DefenderClient


class RotatingCredential(StaticTokenCredential):
    """Returns token-1, token-2, ... so a test can see a token being renewed."""

    def __init__(self):
        super().__init__("unused-token")
        self.issued = 0

    def get_token(self, *scopes, **kwargs):
        self.issued += 1
        token = super().get_token(*scopes)
        return type(token)(f"token-{self.issued}", token.expires_on)


def client(handler, credential=None):
    tokens = TokenProvider(credential or StaticTokenCredential("static-token"), "scope")
    return DefenderClient(
        "http://127.0.0.1:9",
        tokens,
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
    )


def test_run_script_body():
    seen = {}

    def handler(request):
        seen["path"] = request.url.path
        seen["body"] = json.loads(request.content)
        return httpx.Response(201, json={"id": "a-1", "status": "Pending"})

    action = client(handler).run_script("m-1", "anyrun-upload.sh", "v1.abc", "note")
    assert action["id"] == "a-1"
    assert seen["path"] == "/api/machines/m-1/runliveresponse"
    command = seen["body"]["Commands"][0]
    assert command["type"] == "RunScript"
    assert command["params"] == [
        {"key": "ScriptName", "value": "anyrun-upload.sh"},
        {"key": "Args", "value": "v1.abc"},
    ]


def test_active_request_code_is_kept():
    def handler(request):
        body = {"error": {"code": "ActiveRequestAlreadyExists", "message": "busy"}}
        return httpx.Response(400, json=body)

    with pytest.raises(errors.RejectedError) as caught:
        client(handler).run_script("m-1", "s", "a", "c")
    assert caught.value.code == "ActiveRequestAlreadyExists"


def test_run_script_not_retried_on_5xx():
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(500)

    with pytest.raises(errors.ServerError):
        client(handler).run_script("m-1", "s", "a", "c")
    assert len(calls) == 1


def test_expired_token_renewed_once():
    credential = RotatingCredential()
    seen = []

    def handler(request):
        seen.append(request.headers["Authorization"])
        if len(seen) == 1:
            return httpx.Response(
                401, json={"error": {"code": "Unauthorized", "message": "x"}}
            )
        return httpx.Response(200, json={"id": "m-1"})

    assert client(handler, credential).get_machine("m-1") == {"id": "m-1"}
    assert seen == ["Bearer token-1", "Bearer token-2"]


def test_403_not_renewed():
    credential = RotatingCredential()

    def handler(request):
        return httpx.Response(
            403, json={"error": {"code": "Forbidden", "message": "roles"}}
        )

    with pytest.raises(errors.AuthenticationError):
        client(handler, credential).get_machine("m-1")
    assert credential.issued == 1


def test_find_machines_filter_escapes_quote():
    seen = {}

    def handler(request):
        seen["filter"] = request.url.params["$filter"]
        return httpx.Response(200, json={"value": [{"id": "m-1"}]})

    assert client(handler).find_machines("o'brien") == [{"id": "m-1"}]
    assert seen["filter"] == "computerDnsName eq 'o''brien'"


def test_script_result_download_has_no_token():
    seen = []

    def handler(request):
        seen.append(request)
        if "GetLiveResponseResultDownloadLink" in request.url.path:
            return httpx.Response(
                200, json={"value": "http://127.0.0.1:9/_downloads/x?sig=s"}
            )
        return httpx.Response(200, json={"script_output": "{}", "exit_code": 0})

    result = client(handler).script_result("a-1")
    assert result["exit_code"] == 0
    assert "Authorization" in seen[0].headers
    assert "Authorization" not in seen[1].headers


def test_hunting_returns_results():
    def handler(request):
        assert json.loads(request.content) == {"Query": "DeviceFileEvents | take 1"}
        return httpx.Response(
            200, json={"Schema": [], "Results": [{"FolderPath": "/x"}]}
        )

    assert client(handler).run_hunting("DeviceFileEvents | take 1") == [
        {"FolderPath": "/x"}
    ]


def test_alert_comment_patch():
    seen = {}

    def handler(request):
        seen["method"] = request.method
        seen["body"] = json.loads(request.content)
        return httpx.Response(200, json={"id": "da-1"})

    client(handler).comment_alert("da-1", "verdict")
    assert seen == {"method": "PATCH", "body": {"comment": "verdict"}}
