"""Emulated time shared by all emulators of one process.

Emulated time runs ``speed`` times faster than wall time, so with speed 120 a
120-second analysis finishes after one second of wall time. Every duration and
timestamp that an emulated API reports is emulated, and so are the rate-limit
windows, because clients wait for ``Retry-After`` with timers that the local
Functions host runs at the same speed. Request-log times and fault delays are
wall time.
"""

import asyncio
import time
from datetime import UTC, datetime, timedelta


class EmulatedClock:
    """Clock whose emulated seconds run ``speed`` times faster than wall seconds."""

    def __init__(self, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be greater than 0, got {speed!r}")
        self.speed = float(speed)
        self._start_monotonic = time.monotonic()
        self._start_utc = datetime.now(UTC)

    def now(self) -> float:
        """Return the emulated seconds elapsed since the clock was created."""
        return (time.monotonic() - self._start_monotonic) * self.speed

    def utc(self, emulated_seconds: float | None = None) -> datetime:
        """Return the emulated UTC time at ``emulated_seconds`` (default: now)."""
        if emulated_seconds is None:
            emulated_seconds = self.now()
        return self._start_utc + timedelta(seconds=emulated_seconds)

    def wall_seconds(self, emulated_seconds: float) -> float:
        """Convert a span of emulated seconds to wall seconds."""
        return emulated_seconds / self.speed

    async def sleep(self, emulated_seconds: float) -> None:
        await asyncio.sleep(max(0.0, self.wall_seconds(emulated_seconds)))


def iso_utc(moment: datetime, *, digits: int = 3) -> str:
    """Format ``moment`` as ISO 8601 UTC with ``digits`` fractional digits and a Z."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        fraction = f"{moment.microsecond:06d}"[:digits]
        text = f"{text}.{fraction}"
    return text + "Z"


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
