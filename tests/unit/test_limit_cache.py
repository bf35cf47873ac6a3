"""The cached sandbox parallel limit: read once per period, a failed read soon again."""

import pytest

from activities import records


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(records.time, "monotonic", lambda: now[0])
    records.forget_limit()
    yield now
    records.forget_limit()


def test_limit_read_once_per_period(clock):
    reads = []

    def read():
        reads.append(clock[0])
        return 7

    assert records.cached_limit(read, 0) == 7
    clock[0] += records.LIMIT_CACHE_SECONDS - 1
    assert records.cached_limit(read, 0) == 7
    assert len(reads) == 1
    clock[0] += 1
    records.cached_limit(read, 0)
    assert len(reads) == 2


def test_limit_capped_by_setting(clock):
    assert records.cached_limit(lambda: 7, 3) == 3


def test_failed_read_uses_cap_and_retries_soon(clock):
    answers = iter([records.LimitUnknown("503"), 4])
    reads = []

    def read():
        reads.append(clock[0])
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert records.cached_limit(read, 5) == 5
    clock[0] += records.LIMIT_RETRY_SECONDS - 1
    assert records.cached_limit(read, 5) == 5
    assert len(reads) == 1
    clock[0] += 1
    assert records.cached_limit(read, 5) == 4
    assert len(reads) == 2
