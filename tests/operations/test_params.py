"""Validation of the operator endpoints' parameters and bodies."""

from datetime import UTC, datetime

import pytest

from operations.params import (
    DEFAULT_TOP,
    FINISHED_STATUSES,
    MAX_TOP,
    RUNTIME_STATUSES,
    Cursor,
    ParameterError,
    decode_cursor,
    encode_cursor,
    parse_list_query,
    parse_parent_id,
    parse_purge_request,
)


def field_of(call, *args):
    with pytest.raises(ParameterError) as caught:
        call(*args)
    return caught.value


# GET /api/incidents ----------------------------------------------------------


def test_list_defaults():
    query = parse_list_query({})
    assert query.statuses == ()
    assert query.created_after is None
    assert query.created_before is None
    assert query.top == DEFAULT_TOP
    assert query.cursor is None


def test_list_ignores_function_key():
    assert parse_list_query({"code": "secret-key"}).top == DEFAULT_TOP


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Failed", ("Failed",)),
        ("failed,COMPLETED", ("Failed", "Completed")),
        (" Running , Pending ", ("Running", "Pending")),
        ("Failed,failed", ("Failed",)),
        ("", ()),
        (",", ()),
    ],
)
def test_status_parsed(text, expected):
    assert parse_list_query({"status": text}).statuses == expected


def test_every_runtime_status_accepted():
    query = parse_list_query({"status": ",".join(RUNTIME_STATUSES)})
    assert query.statuses == RUNTIME_STATUSES


@pytest.mark.parametrize("text", ["Done", "Completed,Exploded", "Complete"])
def test_unknown_status_rejected(text):
    error = field_of(parse_list_query, {"status": text})
    assert error.field == "status"
    assert "Completed" in error.message
    assert "ContinuedAsNew" in error.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-31", datetime(2025, 1, 31, tzinfo=UTC)),
        ("2025-01-31T08:00:00Z", datetime(2025, 1, 31, 8, tzinfo=UTC)),
        ("2025-01-31T10:00:00+02:00", datetime(2025, 1, 31, 8, tzinfo=UTC)),
        ("2025-01-31T08:00:00", datetime(2025, 1, 31, 8, tzinfo=UTC)),
    ],
)
def test_created_after_parsed(text, expected):
    assert parse_list_query({"createdAfter": text}).created_after == expected


@pytest.mark.parametrize("field", ["createdAfter", "createdBefore"])
@pytest.mark.parametrize("text", ["yesterday", "2025-13-01", "31.01.2025", "1e9"])
def test_bad_time_rejected(field, text):
    error = field_of(parse_list_query, {field: text})
    assert error.field == field
    assert "ISO 8601" in error.message


def test_time_range_reversed():
    params = {"createdAfter": "2025-02-01", "createdBefore": "2025-01-01"}
    assert field_of(parse_list_query, params).field == "createdBefore"


@pytest.mark.parametrize(("text", "expected"), [("1", 1), ("500", 500), (" 7 ", 7)])
def test_top_parsed(text, expected):
    assert parse_list_query({"top": text}).top == expected


@pytest.mark.parametrize("text", ["0", "-1", str(MAX_TOP + 1), "ten", "2.5"])
def test_bad_top_rejected(text):
    error = field_of(parse_list_query, {"top": text})
    assert error.field == "top"
    assert str(MAX_TOP) in error.message


def test_long_value_shortened_in_message():
    error = field_of(parse_list_query, {"status": "x" * 500})
    assert len(error.message) < 300


# Continuation tokens ---------------------------------------------------------


def test_cursor_round_trip():
    cursor = Cursor("host+token/=", "inc-a-1", 3, 100, "abcd")
    assert decode_cursor(encode_cursor(cursor)) == cursor


def test_cursor_token_is_url_safe():
    token = encode_cursor(Cursor("a+b/c==", None, 0, 100, "f"))
    assert all(c.isalnum() or c in "-_" for c in token)


def test_token_accepted_with_same_filters():
    query = parse_list_query({"status": "Failed"})
    token = encode_cursor(Cursor(None, "inc-x", 1, 100, query.fingerprint()))
    resumed = parse_list_query({"status": "failed", "continuationToken": token})
    assert resumed.cursor.after_id == "inc-x"


def test_token_rejected_with_other_filters():
    query = parse_list_query({"status": "Failed"})
    token = encode_cursor(Cursor(None, None, 0, 100, query.fingerprint()))
    error = field_of(
        parse_list_query, {"status": "Completed", "continuationToken": token}
    )
    assert error.field == "continuationToken"


@pytest.mark.parametrize(
    "token",
    [
        "not a token",
        "e30",  # {}
        "eyJ2IjoyfQ",  # {"v":2}
        "W10",  # []
        "ëé",
    ],
)
def test_bad_token_rejected(token):
    error = field_of(parse_list_query, {"continuationToken": token})
    assert error.field == "continuationToken"


# Instance ids ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["inc-7d3e1f52-0123456789ab", "inc-7d3e1f52-0123456789ab-r2"],
)
def test_parent_id_accepted(text):
    assert parse_parent_id(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "purge",
        "abc-7d3e1f52",
        "inc-7d3e1f52-0123456789ab:url-1",
        "inc-" + "a" * 100,
        "inc-a/b",
        "inc-a b",
    ],
)
def test_parent_id_rejected(text):
    error = field_of(parse_parent_id, text)
    assert error.field == "instanceId"
    assert error.code == "invalid_instance_id"


# POST /api/incidents/purge ---------------------------------------------------


def test_purge_defaults_to_finished_statuses():
    request = parse_purge_request({"olderThanDays": 30})
    assert request.older_than_days == 30
    assert request.statuses == FINISHED_STATUSES


def test_purge_statuses_canonical():
    request = parse_purge_request({"olderThanDays": 0, "statuses": ["failed"]})
    assert request.statuses == ("Failed",)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (None, "$"),
        ([], "$"),
        ({}, "olderThanDays"),
        ({"olderThanDays": "30"}, "olderThanDays"),
        ({"olderThanDays": 1.5}, "olderThanDays"),
        ({"olderThanDays": True}, "olderThanDays"),
        ({"olderThanDays": -1}, "olderThanDays"),
        ({"olderThanDays": 3651}, "olderThanDays"),
        ({"olderThanDays": 1, "statuses": "Failed"}, "statuses"),
        ({"olderThanDays": 1, "statuses": []}, "statuses"),
        ({"olderThanDays": 1, "statuses": ["Running"]}, "statuses"),
        ({"olderThanDays": 1, "statuses": [3]}, "statuses"),
        ({"olderThanDays": 1, "status": ["Failed"]}, "status"),
    ],
)
def test_bad_purge_body_rejected(body, field):
    assert field_of(parse_purge_request, body).field == field
