"""Injected faults: rules that make an emulator respond badly to matching requests.

A rule matches by path prefix and optionally by method, and applies to the next
``times`` matching requests. Kinds:

- ``status``: respond with ``status`` (4xx or 5xx) and a body in the API's error
  shape, after ``delay_seconds`` if given, with ``Retry-After`` if
  ``retry_after`` is given.
- ``delay``: wait ``delay_seconds`` (wall time), then serve the request normally.

The kind defaults to ``status`` when the rule has a status and to ``delay``
otherwise. More kinds (connection resets, cut event streams, expired tokens)
register an applier in ``_APPLIERS``.
"""

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

MAX_DELAY_SECONDS = 300.0
CONTROL_PREFIX = "/_emulator/"


class FaultRuleError(ValueError):
    """A fault rule in a control request is invalid."""


@dataclass
class FaultRule:
    kind: str
    path_prefix: str
    method: str | None
    status: int | None
    retry_after: int | None
    delay_seconds: float
    remaining: int

    def matches(self, request: web.Request) -> bool:
        if self.method is not None and request.method != self.method:
            return False
        return request.path.startswith(self.path_prefix)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path_prefix": self.path_prefix,
            "method": self.method,
            "status": self.status,
            "retry_after": self.retry_after,
            "delay_seconds": self.delay_seconds,
            "remaining": self.remaining,
        }


# Builds the JSON body of an injected error response: (request, status, retry_after).
FaultBody = Callable[[web.Request, int, int | None], dict[str, Any]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_rules(payload: Any) -> list[FaultRule]:
    """Parse a JSON rule or rule list; raise FaultRuleError on the first bad rule."""
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise FaultRuleError("the rule list is empty")
    return [_parse_rule(index, item) for index, item in enumerate(items)]


def _parse_rule(index: int, item: Any) -> FaultRule:
    def fail(message: str) -> FaultRuleError:
        return FaultRuleError(f"rule {index}: {message}")

    if not isinstance(item, dict):
        raise fail("must be a JSON object")
    unknown = set(item) - {
        "kind",
        "path_prefix",
        "method",
        "status",
        "retry_after",
        "times",
        "delay_seconds",
    }
    if unknown:
        raise fail(f"unknown fields {sorted(unknown)}")

    path_prefix = item.get("path_prefix")
    if not isinstance(path_prefix, str) or not path_prefix.startswith("/"):
        raise fail("path_prefix must be a string that starts with /")

    method = item.get("method")
    if method is not None:
        if not isinstance(method, str) or not method.isalpha():
            raise fail("method must be an HTTP method such as POST")
        method = method.upper()

    status = item.get("status")
    if status is not None and (not _is_int(status) or not 400 <= status <= 599):
        raise fail(f"status must be an integer from 400 to 599, got {status!r}")

    retry_after = item.get("retry_after")
    if retry_after is not None and (not _is_int(retry_after) or retry_after < 0):
        raise fail(
            f"retry_after must be a whole number of seconds, got {retry_after!r}"
        )

    times = item.get("times", 1)
    if not _is_int(times) or times < 1:
        raise fail(f"times must be an integer of at least 1, got {times!r}")

    delay = item.get("delay_seconds", 0)
    if (
        isinstance(delay, bool)
        or not isinstance(delay, int | float)
        or not 0 <= delay <= MAX_DELAY_SECONDS
    ):
        raise fail(
            f"delay_seconds must be a number from 0 to {MAX_DELAY_SECONDS:g}, "
            f"got {delay!r}"
        )

    kind = item.get("kind", "status" if status is not None else "delay")
    if kind not in _APPLIERS:
        raise fail(f"kind must be one of {sorted(_APPLIERS)}, got {kind!r}")
    if kind == "status" and status is None:
        raise fail("a status rule needs a status")
    if kind == "delay" and not delay:
        raise fail("a delay rule needs delay_seconds greater than 0")

    return FaultRule(
        kind=kind,
        path_prefix=path_prefix,
        method=method,
        status=status,
        retry_after=retry_after,
        delay_seconds=float(delay),
        remaining=times,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class FaultSwitch:
    """The active fault rules of one emulator, safe to change from another thread."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._rules.extend(rules)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def take(self, request: web.Request) -> FaultRule | None:
        """Return the first rule that matches ``request`` and count one use of it."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(request):
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                    return rule
        return None


async def apply_fault(
    rule: FaultRule, request: web.Request, handler: Handler, body: FaultBody
) -> web.StreamResponse:
    log.info(
        "injecting %s fault on %s %s (status %s, %d uses left)",
        rule.kind,
        request.method,
        request.path,
        rule.status,
        rule.remaining,
    )
    return await _APPLIERS[rule.kind](rule, request, handler, body)


async def _apply_status(
    rule: FaultRule, request: web.Request, handler: Handler, body: FaultBody
) -> web.StreamResponse:
    if rule.delay_seconds:
        await asyncio.sleep(rule.delay_seconds)
    assert rule.status is not None
    headers = {}
    if rule.retry_after is not None:
        headers["Retry-After"] = str(rule.retry_after)
    return web.json_response(
        body(request, rule.status, rule.retry_after),
        status=rule.status,
        headers=headers,
    )


async def _apply_delay(
    rule: FaultRule, request: web.Request, handler: Handler, body: FaultBody
) -> web.StreamResponse:
    await asyncio.sleep(rule.delay_seconds)
    return await handler(request)


_APPLIERS: dict[
    str,
    Callable[
        [FaultRule, web.Request, Handler, FaultBody], Awaitable[web.StreamResponse]
    ],
] = {
    "status": _apply_status,
    "delay": _apply_delay,
}
