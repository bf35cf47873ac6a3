"""The OData query options that the emulated list routes accept.

``$filter`` is one or more ``property eq literal`` comparisons joined with
``and``. A literal is a single-quoted string (``''`` is a quote inside it) or
an integer. ``$top`` and ``$skip`` page the result. Other options, operators
and properties give a 400 ``ODataError`` that names what is supported.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emulators.defender.errors import DefenderError

MAX_TOP = 10000
_COMPARISON = re.compile(
    r"\s*(?P<name>[A-Za-z][A-Za-z0-9]*)\s+eq\s+"
    r"(?:'(?P<text>(?:[^']|'')*)'|(?P<number>-?[0-9]+))\s*"
)
_AND = re.compile(r"and\s+")


@dataclass(frozen=True)
class Query:
    """A parsed ``$filter`` (property, value pairs), ``$top`` and ``$skip``."""

    filters: tuple[tuple[str, str | int], ...]
    top: int | None
    skip: int

    def page(self, items: list[Any]) -> list[Any]:
        end = None if self.top is None else self.skip + self.top
        return items[self.skip : end]


def _odata_error(message: str) -> DefenderError:
    return DefenderError(400, message, "ODataError")


def parse_query(params: Mapping[str, str], properties: Mapping[str, type]) -> Query:
    """Parse the query options of a list request.

    ``properties`` maps each property that ``$filter`` may name to ``str`` or
    ``int``, the type its literal must have.
    """
    unknown = sorted(
        name for name in params if name not in ("$filter", "$top", "$skip")
    )
    if unknown:
        raise _odata_error(
            f"Query options {unknown} are not supported by the emulator; use "
            "$filter, $top and $skip"
        )
    filters = parse_filter(params.get("$filter", ""), properties)
    top = _whole_number(params, "$top", MAX_TOP)
    skip = _whole_number(params, "$skip", None) or 0
    return Query(filters=filters, top=top, skip=skip)


def parse_filter(
    text: str, properties: Mapping[str, type]
) -> tuple[tuple[str, str | int], ...]:
    supported = ", ".join(properties)
    if not text.strip():
        return ()
    filters: list[tuple[str, str | int]] = []
    position = 0
    while True:
        match = _COMPARISON.match(text, position)
        if match is None:
            raise _odata_error(
                f"Invalid $filter at character {position}: expected "
                f"<property> eq '<value>' joined with 'and'; properties: {supported}"
            )
        name = match["name"]
        if name not in properties:
            raise _odata_error(
                f"$filter on '{name}' is not supported; properties: {supported}"
            )
        if match["number"] is not None:
            if properties[name] is not int:
                raise _odata_error(f"$filter: '{name}' takes a quoted string")
            filters.append((name, int(match["number"])))
        else:
            if properties[name] is not str:
                raise _odata_error(f"$filter: '{name}' takes an integer")
            filters.append((name, match["text"].replace("''", "'")))
        position = match.end()
        if position == len(text):
            return tuple(filters)
        joined = _AND.match(text, position)
        if joined is None:
            raise _odata_error(
                f"Invalid $filter at character {position}: comparisons can be "
                "joined only with 'and'"
            )
        position = joined.end()


def _whole_number(
    params: Mapping[str, str], name: str, maximum: int | None
) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not re.fullmatch(r"[0-9]{1,9}", raw.strip()):
        raise _odata_error(f"{name} must be a whole number, got {raw[:40]!r}")
    value = int(raw)
    if maximum is not None and not 1 <= value <= maximum:
        raise _odata_error(f"{name} must be from 1 to {maximum}, got {value}")
    return value


def matches(
    item: Mapping[str, Any], filters: tuple[tuple[str, str | int], ...]
) -> bool:
    """Tell whether ``item`` equals every filter value.

    NOTE: strings are compared ignoring case, as host names are. Whether
    Defender's ``eq`` ignores case is not documented.
    """
    for name, expected in filters:
        actual = item.get(name)
        if isinstance(expected, str):
            if not isinstance(actual, str) or actual.lower() != expected.lower():
                return False
        elif actual != expected:
            return False
    return True
