"""Engine clocks: wall, scaled and virtual.

The engine stamps every OrchestratorStarted event with `now()`, so the clock is
what `context.current_utc_datetime` shows, and it decides when durable timers
fire. All times are aware UTC datetimes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from .protocol import format_timestamp, parse_timestamp

ANCHOR_KEY = "clock.anchor"
HIGH_WATER_KEY = "clock.high_water"


class Clock:
    """Base clock; durable time equals wall time."""

    is_virtual = False

    def now(self) -> datetime:
        return datetime.now(UTC)

    def wall_seconds_until(self, moment: datetime) -> float:
        """Return how many wall-clock seconds remain until durable time `moment`."""
        return max(0.0, (moment - self.now()).total_seconds())

    def attach(
        self,
        read_meta: Callable[[str], str | None],
        write_meta: Callable[[str, str], None],
    ) -> None:
        """Restore persisted state from the engine's store (no-op by default)."""


class WallClock(Clock):
    """Durable time is the system's UTC time."""


class ScaledClock(Clock):
    """Durable time = anchor + wall time elapsed since the anchor x `factor`.

    The anchor is stored in the engine's data folder. When the folder is opened
    again, durable time resumes from the stored anchor and factor, so downtime
    counts, scaled. It also never falls below the latest durable time stamped
    into a history, so timestamps keep moving forward across restarts. On a
    fresh folder durable time starts at wall time.
    """

    def __init__(self, factor: float = 1.0) -> None:
        if not factor > 0:
            raise ValueError(f"time scale must be greater than 0, got {factor}")
        self.factor = float(factor)
        self._durable_anchor = datetime.now(UTC)
        self._monotonic_anchor = time.monotonic()

    def attach(
        self,
        read_meta: Callable[[str], str | None],
        write_meta: Callable[[str, str], None],
    ) -> None:
        wall_now = time.time()
        durable_now = datetime.fromtimestamp(wall_now, UTC)

        stored = read_meta(ANCHOR_KEY)
        if stored:
            durable_text, wall_text, factor_text = stored.split("|")
            elapsed = (wall_now - float(wall_text)) * float(factor_text)
            durable_now = parse_timestamp(durable_text) + timedelta(
                seconds=max(0.0, elapsed)
            )
        high_water = read_meta(HIGH_WATER_KEY)
        if high_water:
            durable_now = max(durable_now, parse_timestamp(high_water))

        self._durable_anchor = durable_now
        self._monotonic_anchor = time.monotonic()
        anchor = f"{format_timestamp(durable_now)}|{wall_now!r}|{self.factor!r}"
        write_meta(ANCHOR_KEY, anchor)

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._monotonic_anchor) * self.factor
        return self._durable_anchor + timedelta(seconds=elapsed)

    def wall_seconds_until(self, moment: datetime) -> float:
        return max(0.0, (moment - self.now()).total_seconds() / self.factor)


class VirtualClock(Clock):
    """Durable time that moves only when a caller advances it.

    `Engine.run_until_idle()` moves it to the next timer when nothing else can
    run, so tests cover hours of durable time in milliseconds.
    """

    is_virtual = True

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime(2025, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("VirtualClock start must be an aware datetime")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance_to(self, moment: datetime) -> None:
        """Move durable time forward to `moment`; an earlier moment is ignored."""
        if moment > self._now:
            self._now = moment

    def advance(self, delta: timedelta) -> None:
        self.advance_to(self._now + delta)

    def wall_seconds_until(self, moment: datetime) -> float:
        return 0.0
