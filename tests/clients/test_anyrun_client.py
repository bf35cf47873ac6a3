"""ANY.RUN client tests on httpx.MockTransport handlers that play the service."""

import json
import logging

import httpx
import pytest

from clients import errors
from clients.anyrun import AnyRunClient, parse_monitor_event
from clients.redaction import install

KEY = "anyrun-secret-key-123456"
BASE = "http://127.0.0.1:9"


def client_for(handler, attempts=3):
    return AnyRunClient(
        BASE,
        KEY,
        connector_id="test:1",
        transport=httpx.MockTransport(handler),
        max_attempts=attempts,
        sleep=lambda seconds: None,
    )


def test_submit_sends_url_and_tag():
    seen = {}

    def handler(request):
        seen["body"] = json.loads(request.content)
        seen["auth"] = request.headers["Authorization"]
        return httpx.Response(200, json={"error": False, "data": {"taskid": "t-1"}})

    task = client_for(handler).submit_url(
        "https://a.example/", {"opt_timeout": 60}, "snt-1"
    )
    assert task == "t-1"
    assert seen["body"]["obj_type"] == "url"
    assert seen["body"]["obj_url"] == "https://a.example/"
    assert seen["body"]["user_tags"] == "snt-1"
    assert seen["auth"] == f"API-Key {KEY}"


def test_submit_429_is_quota_error():
    def handler(request):
        return httpx.Response(429, json={"error": True, "message": "Limits exceeded"})

    with pytest.raises(errors.QuotaExceededError) as caught:
        client_for(handler, attempts=2).submit_url("https://a.example/", {}, "t")
    assert caught.value.api_message == "Limits exceeded"


def test_submit_not_retried_on_server_error():
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(502, text="bad gateway")

    with pytest.raises(errors.ServerError):
        client_for(handler).submit_url("https://a.example/", {}, "t")
    assert len(calls) == 1


def test_submit_retried_when_not_connected():
    calls = []

    def handler(request):
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"data": {"taskid": "t-2"}})

    assert client_for(handler).submit_url("https://a.example/", {}, "t") == "t-2"
    assert len(calls) == 2


def test_submit_400_is_rejected_with_message():
    def handler(request):
        return httpx.Response(400, json={"error": True, "message": "obj_url: too long"})

    with pytest.raises(errors.RejectedError) as caught:
        client_for(handler).submit_url("https://a.example/", {}, "t")
    assert "obj_url: too long" in str(caught.value)


def test_queued_task_is_an_error():
    def handler(request):
        return httpx.Response(
            200, json={"error": False, "data": {"queueTaskId": "q-1"}}
        )

    with pytest.raises(errors.ApiError, match="queued as q-1"):
        client_for(handler).submit_url("https://a.example/", {}, "t")


def test_get_report_retries_5xx_then_succeeds():
    answers = iter(
        [httpx.Response(503), httpx.Response(200, json={"data": {"status": "done"}})]
    )

    def handler(request):
        return next(answers)

    assert client_for(handler).get_report("t-1") == {"status": "done"}


def test_retry_after_is_honoured():
    waits = []
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "7"}, json={"message": "slow"}),
            httpx.Response(200, json={"data": {"status": "done"}}),
        ]
    )
    client = AnyRunClient(
        BASE,
        KEY,
        connector_id="x",
        transport=httpx.MockTransport(lambda request: next(answers)),
        sleep=waits.append,
    )
    client.get_report("t-1")
    assert waits == [7.0]


def test_retry_wait_is_capped():
    waits = []
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "3600"}),
            httpx.Response(200, json={"data": {}}),
        ]
    )
    client = AnyRunClient(
        BASE,
        KEY,
        connector_id="x",
        transport=httpx.MockTransport(lambda request: next(answers)),
        sleep=waits.append,
        max_retry_wait_seconds=20,
    )
    client.get_report("t-1")
    assert waits == [20]


def test_attempts_are_bounded():
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(500)

    with pytest.raises(errors.ServerError):
        client_for(handler, attempts=4).get_report("t-1")
    assert len(calls) == 4


def test_401_is_not_retried():
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(
            401, json={"error": True, "message": "Authentication required"}
        )

    with pytest.raises(errors.AuthenticationError):
        client_for(handler).get_report("t-1")
    assert len(calls) == 1


def test_find_task_by_tag():
    def handler(request):
        assert request.url.params["limit"] == "100"
        tasks = [
            {"uuid": "t-old", "tags": ["other"]},
            {"uuid": "t-mine", "tags": [{"tag": "snt-abc"}]},
        ]
        return httpx.Response(200, json={"error": False, "data": {"tasks": tasks}})

    assert client_for(handler).find_task_by_tag("snt-abc") == "t-mine"


def test_find_task_by_tag_absent():
    def handler(request):
        return httpx.Response(
            200, json={"data": {"tasks": [{"uuid": "x", "tags": []}]}}
        )

    assert client_for(handler).find_task_by_tag("snt-abc") is None


def sse(*events):
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events)
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=body
    )


def test_status_reads_first_event():
    event = {
        "task": {"status": 60, "remaining": "42"},
        "completed": False,
        "error": False,
    }

    def handler(request):
        assert request.url.path == "/v1/analysis/monitor/t-1"
        return sse(event, {"task": {"status": 100}, "completed": True})

    assert client_for(handler).get_status("t-1") == {
        "state": "running",
        "status": 60,
        "remaining": 42,
        "threat_level": None,
        "verdict": None,
    }


def test_status_follows_ending_task():
    events = [
        {"task": {"status": 95, "remaining": "3"}},
        {"task": {"status": 98, "remaining": "1"}},
        {"task": {"status": 100}, "completed": True},
    ]
    status = client_for(lambda request: sse(*events)).get_status(
        "t-1", follow_seconds=20
    )
    assert status["state"] == "done"


def test_status_follow_skips_long_task():
    events = [
        {"task": {"status": 60, "remaining": "90"}},
        {"task": {"status": 100}, "completed": True},
    ]
    status = client_for(lambda request: sse(*events)).get_status(
        "t-1", follow_seconds=20
    )
    assert status["state"] == "running"
    assert status["remaining"] == 90


def test_status_follow_returns_last_event_at_stream_end():
    events = [{"task": {"status": 95, "remaining": "2"}}]
    status = client_for(lambda request: sse(*events)).get_status(
        "t-1", follow_seconds=20
    )
    assert status["state"] == "running"
    assert status["remaining"] == 2


def test_status_empty_stream_is_transport_error():
    def handler(request):
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=b""
        )

    with pytest.raises(errors.TransportError):
        client_for(handler, attempts=2).get_status("t-1")


def test_status_json_answer_is_error():
    def handler(request):
        return httpx.Response(200, json={"error": True, "message": "Task not found"})

    with pytest.raises(errors.ApiError, match="expected an event stream"):
        client_for(handler).get_status("t-1")


@pytest.mark.parametrize(
    ("event", "state"),
    [
        ({"task": {"status": 100}, "completed": True}, "done"),
        ({"task": {"status": -1}, "error": True}, "failed"),
        ({"task": {"status": 10}}, "running"),
        ({"task": {"status": "bad", "remaining": "x"}}, "running"),
    ],
)
def test_parse_monitor_event(event, state):
    assert parse_monitor_event(event)["state"] == state


def test_key_never_logged(caplog):
    install()

    def handler(request):
        return httpx.Response(500)

    caplog.set_level(logging.DEBUG)
    with pytest.raises(errors.ServerError):
        client_for(handler, attempts=2).get_report("t-1")
    logging.getLogger("test").warning("header was API-Key %s", KEY)
    assert KEY not in caplog.text
    assert "http.retry" in caplog.text


def test_error_message_has_no_key():
    def handler(request):
        return httpx.Response(403, json={"error": True, "message": "Forbidden"})

    with pytest.raises(errors.AuthenticationError) as caught:
        client_for(handler).get_report("t-1")
    assert KEY not in str(caught.value)


class _Chunks(httpx.SyncByteStream):
    """A body that arrives in pieces, as a real server's does."""

    def __init__(self, *chunks: bytes):
        self.chunks = chunks

    def __iter__(self):
        yield from self.chunks


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, errors.NotFoundError), (500, errors.ServerError)],
)
def test_status_error_answer_is_read_and_mapped(status, error):
    """An error response to the monitor request carries its message in the error."""

    def handler(request):
        return httpx.Response(
            status,
            headers={"content-type": "application/json"},
            stream=_Chunks(b'{"error": true, ', b'"message": "Task not found"}'),
        )

    with pytest.raises(error, match="Task not found"):
        client_for(handler, attempts=2).get_status("t-1")
