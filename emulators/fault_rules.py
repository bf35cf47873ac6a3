"""Fault rules: their fields, and parsing them from the JSON of a control request.

emulators.faults describes each kind and applies the rules.
"""

import random
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MAX_DELAY_SECONDS = 300.0
MAX_PATH_REGEX_CHARS = 1000

# Kinds that every emulator supports.
COMMON_KINDS = ("status", "delay", "reset", "reset_after", "late", "cut_stream")
# Kinds that only some emulators support, with where they apply.
SPECIAL_KINDS = {
    "expire_token": "the Sentinel and Defender emulators, which use bearer tokens",
    "partial": "the Sentinel emulator's TI upload route",
}
_FIELDS = {
    "kind",
    "path_prefix",
    "path_regex",
    "method",
    "status",
    "retry_after",
    "times",
    "delay_seconds",
    "probability",
    "seed",
    "events",
    "fail_ratio",
}
# The kinds that use delay_seconds, events and fail_ratio.
_DELAY_KINDS = ("status", "delay", "late", "reset", "reset_after")
_EVENTS_KIND = "cut_stream"
_FAIL_RATIO_KIND = "partial"
DEFAULT_EVENTS = 1
DEFAULT_FAIL_RATIO = 0.5


class FaultRuleError(ValueError):
    """A fault rule in a control request is invalid."""


@dataclass
class FaultRule:
    """One fault rule: what it matches, what it does and how often.

    ``remaining`` counts the uses left and ``injected`` the requests faulted so
    far. ``rng`` is the rule's own generator, seeded with ``seed``.
    """

    kind: str
    path_prefix: str | None
    path_regex: re.Pattern[str] | None
    method: str | None
    status: int | None
    retry_after: int | None
    delay_seconds: float
    remaining: int
    probability: float = 1.0
    seed: int = 0
    events: int | None = None
    fail_ratio: float | None = None
    injected: int = 0
    rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def matches(self, request: web.Request) -> bool:
        if self.method is not None and request.method != self.method:
            return False
        if self.path_regex is not None:
            return self.path_regex.fullmatch(request.path) is not None
        assert self.path_prefix is not None
        return request.path.startswith(self.path_prefix)

    def draw(self) -> bool:
        """Return whether a matching request is faulted, by ``probability``."""
        return self.probability >= 1.0 or self.rng.random() < self.probability

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path_prefix": self.path_prefix,
            "path_regex": self.path_regex.pattern if self.path_regex else None,
            "method": self.method,
            "status": self.status,
            "retry_after": self.retry_after,
            "delay_seconds": self.delay_seconds,
            "probability": self.probability,
            "seed": self.seed,
            "events": self.events,
            "fail_ratio": self.fail_ratio,
            "remaining": self.remaining,
            "injected": self.injected,
        }


def parse_rules(
    payload: Any,
    kinds: Collection[str] = COMMON_KINDS,
    emulator: str = "this",
) -> list[FaultRule]:
    """Parse a JSON rule or rule list; raise FaultRuleError on the first bad rule.

    ``kinds`` are the kinds that the ``emulator`` supports.
    """
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise FaultRuleError("the rule list is empty")
    return [
        _parse_rule(index, item, kinds, emulator) for index, item in enumerate(items)
    ]


def _parse_rule(
    index: int, item: Any, kinds: Collection[str], emulator: str
) -> FaultRule:
    def fail(message: str) -> FaultRuleError:
        return FaultRuleError(f"rule {index}: {message}")

    if not isinstance(item, dict):
        raise fail("must be a JSON object")
    unknown = set(item) - _FIELDS
    if unknown:
        raise fail(f"unknown fields {sorted(unknown)}")
    try:
        status = _parse_status(item)
        kind = _parse_kind(item, status, kinds, emulator)
        _check_kind_fields(item, kind)
        path_prefix, path_regex = _parse_path(item)
        delay = _parse_delay(item, kind)
        return FaultRule(
            kind=kind,
            path_prefix=path_prefix,
            path_regex=path_regex,
            method=_parse_method(item),
            status=status,
            retry_after=_parse_retry_after(item),
            delay_seconds=delay,
            remaining=_parse_times(item),
            probability=_parse_fraction(item, "probability", 1.0),
            seed=_parse_seed(item),
            events=_parse_events(item) if kind == _EVENTS_KIND else None,
            fail_ratio=(
                _parse_fraction(item, "fail_ratio", DEFAULT_FAIL_RATIO)
                if kind == _FAIL_RATIO_KIND
                else None
            ),
        )
    except FaultRuleError as exc:
        raise fail(str(exc)) from None


def _parse_status(item: dict[str, Any]) -> int | None:
    status = item.get("status")
    if status is not None and (not _is_int(status) or not 400 <= status <= 599):
        raise FaultRuleError(
            f"status must be an integer from 400 to 599, got {status!r}"
        )
    return status


def _parse_kind(
    item: dict[str, Any], status: int | None, kinds: Collection[str], emulator: str
) -> str:
    kind = item.get("kind", "status" if status is not None else "delay")
    if kind in kinds:
        return kind
    if kind in SPECIAL_KINDS:
        raise FaultRuleError(
            f"kind {kind!r} is not supported by the {emulator} emulator; it "
            f"applies to {SPECIAL_KINDS[kind]}. Kinds here: {', '.join(kinds)}"
        )
    raise FaultRuleError(f"kind must be one of {', '.join(kinds)}, got {kind!r}")


def _check_kind_fields(item: dict[str, Any], kind: str) -> None:
    """Reject fields that the kind does not use, so a typo in kind cannot pass."""
    if kind != "status":
        for name in ("status", "retry_after"):
            if item.get(name) is not None:
                raise FaultRuleError(
                    f"{name} is used only by status rules, not by kind {kind!r}; "
                    "remove it"
                )
    if kind not in _DELAY_KINDS and item.get("delay_seconds", 0) != 0:
        raise FaultRuleError(
            f"delay_seconds is not used by kind {kind!r}; remove it (kinds with a "
            f"delay: {', '.join(_DELAY_KINDS)})"
        )
    if kind != _EVENTS_KIND and "events" in item:
        raise FaultRuleError(
            f"events is used only by {_EVENTS_KIND} rules; remove it or set "
            f'"kind": "{_EVENTS_KIND}"'
        )
    if kind != _FAIL_RATIO_KIND and "fail_ratio" in item:
        raise FaultRuleError(
            f"fail_ratio is used only by {_FAIL_RATIO_KIND} rules; remove it or set "
            f'"kind": "{_FAIL_RATIO_KIND}"'
        )
    if kind == "status" and item.get("status") is None:
        raise FaultRuleError("a status rule needs a status from 400 to 599")


def _parse_path(item: dict[str, Any]) -> tuple[str | None, re.Pattern[str] | None]:
    prefix = item.get("path_prefix")
    pattern = item.get("path_regex")
    if (prefix is None) == (pattern is None):
        raise FaultRuleError(
            "give exactly one of path_prefix (such as /v1/analysis) and path_regex "
            "(such as /v1/analysis/[0-9a-f-]{36})"
        )
    if prefix is not None:
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise FaultRuleError("path_prefix must be a string that starts with /")
        return prefix, None
    if not isinstance(pattern, str) or not pattern:
        raise FaultRuleError("path_regex must be a non-empty string")
    if len(pattern) > MAX_PATH_REGEX_CHARS:
        raise FaultRuleError(
            f"path_regex is longer than {MAX_PATH_REGEX_CHARS} characters"
        )
    try:
        return None, re.compile(pattern)
    except re.error as exc:
        raise FaultRuleError(
            f"path_regex {pattern!r} is not a valid Python regular expression: "
            f"{exc}. It must match the whole path, such as "
            "/v1/analysis/[0-9a-f-]{36}"
        ) from None


def _parse_method(item: dict[str, Any]) -> str | None:
    method = item.get("method")
    if method is None:
        return None
    if not isinstance(method, str) or not method.isalpha():
        raise FaultRuleError("method must be an HTTP method such as POST")
    return method.upper()


def _parse_retry_after(item: dict[str, Any]) -> int | None:
    retry_after = item.get("retry_after")
    if retry_after is not None and (not _is_int(retry_after) or retry_after < 0):
        raise FaultRuleError(
            f"retry_after must be a whole number of seconds, got {retry_after!r}"
        )
    return retry_after


def _parse_times(item: dict[str, Any]) -> int:
    times = item.get("times", 1)
    if not _is_int(times) or times < 1:
        raise FaultRuleError(f"times must be an integer of at least 1, got {times!r}")
    return times


def _parse_delay(item: dict[str, Any], kind: str) -> float:
    delay = item.get("delay_seconds", 0)
    if not _is_number(delay) or not 0 <= delay <= MAX_DELAY_SECONDS:
        raise FaultRuleError(
            f"delay_seconds must be a number from 0 to {MAX_DELAY_SECONDS:g}, "
            f"got {delay!r}"
        )
    if kind in ("delay", "late") and not delay:
        raise FaultRuleError(f"a {kind} rule needs delay_seconds greater than 0")
    return float(delay)


def _parse_fraction(item: dict[str, Any], name: str, default: float) -> float:
    value = item.get(name, default)
    if not _is_number(value) or not 0 < value <= 1:
        raise FaultRuleError(
            f"{name} must be a number greater than 0 and at most 1, got {value!r}"
        )
    return float(value)


def _parse_seed(item: dict[str, Any]) -> int:
    if "seed" not in item:
        # A fresh seed, shown in the rule's JSON so that a run can be repeated.
        return random.SystemRandom().randrange(2**32)
    seed = item["seed"]
    if not _is_int(seed):
        raise FaultRuleError(f"seed must be an integer, got {seed!r}")
    return seed


def _parse_events(item: dict[str, Any]) -> int:
    events = item.get("events", DEFAULT_EVENTS)
    if not _is_int(events) or events < 0:
        raise FaultRuleError(f"events must be an integer of at least 0, got {events!r}")
    return events


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
