"""URL entity normalisation: refanging, schemes, hosts and lengths."""

import pytest

from enrichment.urls import MAX_URL_CHARS, defang, normalise, refang


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("hxxps://evil[.]example[.]net/a", "https://evil.example.net/a"),
        ("hxxp://evil(.)example(.)net", "http://evil.example.net"),
        ("HXXPS://a[dot]example[.]com", "https://a.example.com"),
        ("http[:]//files[.]example[.]net/x.zip", "http://files.example.net/x.zip"),
        ("  https://plain.example.com/  ", "https://plain.example.com/"),
    ],
)
def test_refang(raw, expected):
    assert refang(raw) == expected


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("HTTPS://WWW.EXAMPLE.COM/", "https://www.example.com/"),
        ("https://www.example.com:443/a?b=1#frag", "https://www.example.com/a?b=1"),
        ("http://www.example.com:8080", "http://www.example.com:8080/"),
        ("https://bücher.example/", "https://xn--bcher-kva.example/"),
        ("http://198.51.100.23/payload.bin", "http://198.51.100.23/payload.bin"),
        ("http://[2001:db8::1]/x", "http://[2001:db8::1]/x"),
        ("hxxps://login[.]example[.]net/?q=1", "https://login.example.net/?q=1"),
    ],
)
def test_normalise_analysable(raw, url):
    checked = normalise(raw)
    assert checked.analysable
    assert checked.url == url


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("ftp://files.example.net/a.zip", "scheme 'ftp'"),
        ("javascript:alert(1)", "scheme 'javascript'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("data:text/html,hi", "scheme 'data'"),
        ("www.example.com/no-scheme", "no scheme"),
        ("https://", "no host"),
        ("", "empty"),
        ("https://a.example/\nx", "control characters"),
        ("https://a.example:99999/", "host is invalid"),
        ("https://" + "a" * 600 + ".example/", "host is invalid"),
        ("https://a.example/" + "p" * MAX_URL_CHARS, "the sandbox accepts 512"),
    ],
)
def test_normalise_rejects(raw, reason):
    checked = normalise(raw)
    assert not checked.analysable
    assert reason in checked.reason


def test_defang_host_and_scheme():
    assert defang("https://a.example.net/x.y") == "hxxps://a[.]example[.]net/x.y"
