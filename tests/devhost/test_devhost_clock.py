"""Clock tests: scaled time, its persisted anchor, and the virtual clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from devhost import ScaledClock, VirtualClock
from devhost.clock import HIGH_WATER_KEY


class MetaStore(dict):
    def read(self, key: str) -> str | None:
        return self.get(key)

    def write(self, key: str, value: str) -> None:
        self[key] = value


def test_scaled_clock_speed():
    clock = ScaledClock(120)
    clock.attach(MetaStore().read, MetaStore().write)
    before = clock.now()
    time.sleep(0.05)
    # 0.05 s of wall time at 120x is 6 s; allow for timer granularity.
    assert clock.now() - before >= timedelta(seconds=5.5)


def test_scaled_clock_wall_wait():
    clock = ScaledClock(120)
    target = clock.now() + timedelta(seconds=120)
    assert clock.wall_seconds_until(target) == pytest.approx(1.0, abs=0.05)


def test_scaled_clock_resumes_forward():
    meta = MetaStore()
    first = ScaledClock(1000)
    first.attach(meta.read, meta.write)
    time.sleep(0.02)
    last_seen = first.now()
    second = ScaledClock(1)
    second.attach(meta.read, meta.write)
    assert second.now() >= last_seen


def test_scaled_clock_high_water():
    meta = MetaStore()
    ahead = datetime.now(UTC) + timedelta(days=3)
    meta.write(HIGH_WATER_KEY, ahead.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    clock = ScaledClock(1)
    clock.attach(meta.read, meta.write)
    assert clock.now() >= ahead


def test_scaled_clock_rejects_zero():
    with pytest.raises(ValueError, match="greater than 0"):
        ScaledClock(0)


def test_virtual_clock_never_back():
    start = datetime(2025, 1, 1, tzinfo=UTC)
    clock = VirtualClock(start)
    clock.advance_to(start - timedelta(hours=1))
    assert clock.now() == start


def test_virtual_clock_naive_start():
    with pytest.raises(ValueError, match="aware"):
        VirtualClock(datetime(2025, 1, 1))
