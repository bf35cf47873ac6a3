"""Injected faults: rules that make an emulator respond badly to matching requests.

A rule matches a request by path, with ``path_prefix`` (the path starts with it)
or ``path_regex`` (a Python regular expression that matches the whole path),
and optionally by ``method``. It applies to the next ``times`` matching requests
(default 1). With ``probability`` p below 1, each matching request is faulted
with probability p, and a request that is not faulted does not use up
``times``. ``seed`` seeds the rule's random generator, so a run can be repeated.
Kinds:

- ``status``: respond with ``status`` (4xx or 5xx) and a body in the API's error
  shape, after ``delay_seconds`` if given, with ``Retry-After`` if
  ``retry_after`` is given.
- ``delay``: wait ``delay_seconds`` (wall time), then serve the request normally.
- ``reset``: reset the TCP connection (RST) before the request is handled, after
  ``delay_seconds`` if given. Nothing changes in the emulator's state.
- ``reset_after``: handle the request, so its effect happens, then reset the
  connection instead of sending the response, after ``delay_seconds`` if given.
- ``late``: handle the request, then hold the response for ``delay_seconds``.
- ``cut_stream``: a streaming route (the ANY.RUN monitor) sends ``events``
  events (default 1) and then resets the connection in the middle of the body.
  On any other route it acts as ``reset_after``.
- ``expire_token`` (Sentinel, Defender): the request's bearer token expires and
  the request gets a 401. The token keeps getting 401 until a reset.
- ``partial`` (Sentinel TI upload): the upload returns 200 with an error for
  ``fail_ratio`` of the valid records (at least one), which are not stored.

The kind defaults to ``status`` when the rule has a status and to ``delay``
otherwise. emulators.fault_rules parses the rules, and each kind's applier is
registered in ``_APPLIERS``. The kinds that a route handler applies itself
(``cut_stream``, ``expire_token``, ``partial``) mark the request, and the
handler takes the rule with ``claim_fault``.

Each rule counts the requests it faulted (``injected``), and ``FaultSwitch``
keeps the counts by kind after its rules are used up, until a reset. An emulator
that resets a connection logs the request with status ``RESET_STATUS`` (0).
"""

import asyncio
import logging
import math
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from emulators.fault_rules import (
    COMMON_KINDS,
    DEFAULT_FAIL_RATIO,
    SPECIAL_KINDS,
    FaultRule,
)

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/_emulator/"
# The request-log status of a request whose connection an injected fault reset.
RESET_STATUS = 0

# Builds the JSON body of an injected error response: (request, status, retry_after).
FaultBody = Callable[[web.Request, int, int | None], dict[str, Any]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Returns whether a kind applies to a request, such as "partial" to TI uploads only.
RequestFilter = Callable[[web.Request], bool]

FAULT_KEY = web.RequestKey("fault", FaultRule)
_CLAIMED_KEY = web.RequestKey("fault_claimed", bool)
_RESET_KEY = web.RequestKey("connection_reset", bool)


# The rules of one emulator


class FaultSwitch:
    """The active fault rules of one emulator, safe to change from another thread.

    ``extra_kinds`` adds kinds of ``SPECIAL_KINDS`` to the common ones, each with
    an optional filter: a rule of that kind skips requests that the filter
    rejects, without using up ``times``. The counts of injected faults by kind
    outlive the rules and are cleared only by ``reset``.
    """

    def __init__(
        self, extra_kinds: Mapping[str, RequestFilter | None] | None = None
    ) -> None:
        extra = dict(extra_kinds or {})
        unknown = set(extra) - set(SPECIAL_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        self._filters: dict[str, RequestFilter | None] = dict.fromkeys(COMMON_KINDS)
        self._filters.update(extra)
        self._rules: list[FaultRule] = []
        self._injected = dict.fromkeys(self._filters, 0)
        self._lock = threading.Lock()

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._filters)

    def add(self, rules: list[FaultRule]) -> None:
        unsupported = [rule.kind for rule in rules if rule.kind not in self._filters]
        if unsupported:
            raise ValueError(f"unsupported fault kinds {sorted(set(unsupported))}")
        with self._lock:
            self._rules.extend(rules)

    def clear(self) -> None:
        """Remove every rule but keep the counts of injected faults."""
        with self._lock:
            self._rules.clear()

    def reset(self) -> None:
        """Remove every rule and set the counts of injected faults to 0."""
        with self._lock:
            self._rules.clear()
            self._injected = dict.fromkeys(self._filters, 0)

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def stats(self) -> dict[str, int]:
        """Return the number of injected faults by kind."""
        with self._lock:
            return dict(self._injected)

    def take(self, request: web.Request) -> FaultRule | None:
        """Return the first rule that faults ``request`` and count one use of it.

        A rule that matches but draws no fault (``probability``) leaves the
        request to the rules after it.
        """
        with self._lock:
            for rule in self._rules:
                if not rule.matches(request):
                    continue
                applies = self._filters.get(rule.kind)
                if applies is not None and not applies(request):
                    continue
                if not rule.draw():
                    continue
                rule.remaining -= 1
                rule.injected += 1
                self._injected[rule.kind] += 1
                if rule.remaining <= 0:
                    self._rules.remove(rule)
                return rule
        return None


# Applying a rule


def claim_fault(request: web.Request, kind: str) -> FaultRule | None:
    """Return the rule of ``kind`` that marks ``request``, and record the claim.

    Route handlers call this for the kinds that they apply themselves.
    """
    rule = request.get(FAULT_KEY)
    if rule is None or rule.kind != kind:
        return None
    request[_CLAIMED_KEY] = True
    return rule


def reset_connection(request: web.Request) -> None:
    """Abort the request's connection with a TCP RST instead of a response.

    SO_LINGER with a zero timeout makes the close send RST, so the client sees
    "connection reset" rather than an orderly end of the response.
    """
    request[_RESET_KEY] = True
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        except OSError as exc:
            log.warning("could not set SO_LINGER, closing without RST: %s", exc)
    transport.abort()


def was_reset(request: web.Request) -> bool:
    return request.get(_RESET_KEY, False)


def _unsent_response() -> web.Response:
    """Return a placeholder for a request whose connection is already aborted.

    aiohttp fails to write it to the closed transport and ignores that failure
    quietly, as it does for a client that went away.
    """
    return web.Response(status=204)


async def apply_fault(
    rule: FaultRule, request: web.Request, handler: Handler, body: FaultBody
) -> web.StreamResponse:
    log.info(
        "injecting %s fault on %s %s (%d uses left)",
        rule.kind,
        request.method,
        request.path,
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


async def _apply_reset(
    rule: FaultRule, request: web.Request, handler: Handler, body: FaultBody
) -> web.StreamResponse:
    if rule.delay_seconds:
        await asyncio.sleep(rule.delay_seconds)
    reset_connection(request)
    return _unsent_response()


async def _apply_reset_after(
    rule: FaultRule, request: web.Request, handler: Handler, body: FaultBody
) -> web.StreamResponse:
    try:
        await handler(request)
    except web.HTTPException:
        pass  # the error response is lost with the connection, like any other
    if rule.delay_seconds:
        await asyncio.sleep(rule.delay_seconds)
    reset_connection(request)
    return _unsent_response()


async def _apply_late(
    rule: FaultRule, request: web.Request, handler: Handler, body: FaultBody
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException:
        await asyncio.sleep(rule.delay_seconds)
        raise
    await asyncio.sleep(rule.delay_seconds)
    return response


async def _apply_cut_stream(
    rule: FaultRule, request: web.Request, handler: Handler, body: FaultBody
) -> web.StreamResponse:
    request[FAULT_KEY] = rule
    try:
        response: web.StreamResponse | None = await handler(request)
    except web.HTTPException:
        if request.get(_CLAIMED_KEY, False):
            raise
        response = None
    if request.get(_CLAIMED_KEY, False):
        assert response is not None
        return response
    # The route does not stream, so the whole response is cut.
    reset_connection(request)
    return _unsent_response()


async def _apply_by_handler(
    rule: FaultRule, request: web.Request, handler: Handler, body: FaultBody
) -> web.StreamResponse:
    request[FAULT_KEY] = rule
    return await handler(request)


_APPLIERS: dict[
    str,
    Callable[
        [FaultRule, web.Request, Handler, FaultBody], Awaitable[web.StreamResponse]
    ],
] = {
    "status": _apply_status,
    "delay": _apply_delay,
    "reset": _apply_reset,
    "reset_after": _apply_reset_after,
    "late": _apply_late,
    "cut_stream": _apply_cut_stream,
    "expire_token": _apply_by_handler,
    "partial": _apply_by_handler,
}


def choose_failed_records(rule: FaultRule, candidates: list[int]) -> set[int]:
    """Pick the records that a ``partial`` rule fails: ``fail_ratio`` of them.

    At least one is picked when there are candidates. The choice depends only on
    the rule's random generator, so a seeded rule picks the same ones each run.
    """
    if not candidates:
        return set()
    ratio = rule.fail_ratio if rule.fail_ratio is not None else DEFAULT_FAIL_RATIO
    count = min(len(candidates), max(1, math.ceil(ratio * len(candidates))))
    return set(rule.rng.sample(candidates, count))
