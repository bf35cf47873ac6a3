"""Redaction of secrets in log text."""

import pytest

from clients.redaction import REDACTED, redact_text

SECRET = "SECRETMARKER0123456789"


@pytest.mark.parametrize(
    "text",
    [
        f"PUT https://a.blob.core.windows.net/c/b?sv=2025&sig={SECRET}&se=1",
        f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={SECRET}==;x=y",
        f"Endpoint=sb://a/;SharedAccessKeyName=n;SharedAccessKey={SECRET}",
        f"Authorization: Bearer {SECRET}",
        f"Authorization: API-Key {SECRET}",
        f"GET /api/incidents?code={SECRET}",
        f"x-functions-key: {SECRET}",
    ],
)
def test_secret_replaced(text):
    redacted = redact_text(text)
    assert SECRET not in redacted
    assert REDACTED in redacted


def test_plain_text_unchanged():
    text = "incident.accepted instance=inc-1 objects=3"
    assert redact_text(text) == text
