"""Per-token call limits of the Defender API, counted in emulated time.

Documented limits: runliveresponse 10 calls per minute; advanced hunting 45
per minute and 1,500 per hour; most other endpoints 100 per minute and 1,500
per hour. Each API group has its own budget.
"""

import math
from collections import deque
from dataclasses import dataclass

from emulators.clock import EmulatedClock

MINUTE = 60.0
HOUR = 3600.0


@dataclass(frozen=True)
class Limit:
    calls: int
    window_seconds: float


LIVE_RESPONSE = (Limit(10, MINUTE),)
ADVANCED_HUNTING = (Limit(45, MINUTE), Limit(1500, HOUR))
DEFAULT = (Limit(100, MINUTE), Limit(1500, HOUR))


class Throttle:
    """Sliding windows of call times per (token, API group)."""

    def __init__(self, clock: EmulatedClock) -> None:
        self._clock = clock
        self._calls: dict[tuple[str, str], deque[float]] = {}

    def clear(self) -> None:
        self._calls.clear()

    def acquire(self, token: str, group: str, limits: tuple[Limit, ...]) -> int | None:
        """Count one call; return the seconds to wait instead if a limit is reached."""
        now = self._clock.now()
        calls = self._calls.setdefault((token, group), deque())
        longest = max(limit.window_seconds for limit in limits)
        while calls and calls[0] <= now - longest:
            calls.popleft()
        waits = []
        for limit in limits:
            in_window = [t for t in calls if t > now - limit.window_seconds]
            if len(in_window) >= limit.calls:
                oldest = in_window[-limit.calls]
                waits.append(max(1, math.ceil(oldest + limit.window_seconds - now)))
        if waits:
            return max(waits)
        calls.append(now)
        return None
