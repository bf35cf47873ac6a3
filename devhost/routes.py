"""ASP.NET-style route templates of HTTP-triggered functions.

Supported: literal segments, `{name}`, optional `{name?}` (with the slash
before it), constraints `{id:guid}`, `int`, `long`, `bool`, `alpha`, and a
catch-all `{*rest}`. Matching is case-insensitive, as in the Functions host.
An unknown constraint matches any segment and logs a warning once.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger("devhost.routes")

T = TypeVar("T")

_CONSTRAINTS = {
    "guid": r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
    r"[0-9a-fA-F]{12}",
    "int": r"-?\d+",
    "long": r"-?\d+",
    "bool": r"(?i:true|false)",
    "alpha": r"[A-Za-z]+",
}
_PARAMETER = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(\?)?(?::([^}]+))?\}")


def compile_route(template: str) -> re.Pattern[str]:
    """Compile a route template into a regular expression with named groups."""
    pattern = ""
    for index, segment in enumerate(template.strip("/").split("/")):
        slash = "" if index == 0 else "/"
        match = _PARAMETER.fullmatch(segment)
        if match is None:
            pattern += re.escape(slash + segment)
            continue
        catch_all, name, optional, constraint = match.groups()
        if catch_all:
            value = r".*"
        elif constraint:
            value = _constraint_pattern(template, constraint)
        else:
            value = r"[^/]+"
        group = f"(?P<{name}>{value})"
        if optional or catch_all:
            pattern += f"(?:{re.escape(slash)}{group})?"
        else:
            pattern += re.escape(slash) + group
    return re.compile(pattern, re.IGNORECASE)


def _constraint_pattern(template: str, constraint: str) -> str:
    known = _CONSTRAINTS.get(constraint.lower())
    if known is None:
        log.warning(
            "route.constraint_ignored route=%s constraint=%s", template, constraint
        )
        return r"[^/]+"
    return known


@dataclass
class _Route(Generic[T]):
    pattern: re.Pattern[str]
    methods: tuple[str, ...] | None
    target: T


class Router(Generic[T]):
    """Match a request path (without the route prefix) to a target."""

    def __init__(self) -> None:
        self._routes: list[_Route[T]] = []

    def add(self, template: str, methods: tuple[str, ...] | None, target: T) -> None:
        self._routes.append(_Route(compile_route(template), methods, target))

    def match(self, path: str, method: str) -> tuple[T, dict[str, str]] | None:
        """Return the first route matching path and method, with its parameters."""
        path = path.strip("/")
        for route in self._routes:
            found = route.pattern.fullmatch(path)
            if found is None:
                continue
            if route.methods is not None and method.upper() not in route.methods:
                continue
            params = {k: v for k, v in found.groupdict().items() if v is not None}
            return route.target, params
        return None
