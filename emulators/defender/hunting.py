"""The subset of KQL that the emulated advanced hunting API runs.

Supported, on the DeviceFileEvents table only:

    DeviceFileEvents
    | where Column == 'value' [and Column =~ 'value' ...]
    | order by Column [asc|desc] [, ...]
    | project Column [, ...]
    | take N

Stages may come in any order and repeat; ``sort by`` and ``limit`` are
accepted as the synonyms they are in KQL. Comparisons are ``==`` (case
sensitive), ``=~`` (case insensitive) and ``!=``, against a string literal
('...' or "..." with backslash escapes) or, for Int64 columns, an integer.
``order by`` without a direction sorts descending, as in KQL. Anything else
gives a 400 whose message shows this form.
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from emulators.defender.actions import defender_time
from emulators.defender.errors import DefenderError

TABLE = "DeviceFileEvents"
# NOTE: the documented response example shows only the DateTime and String
# type names; Int64 for long columns is a guess.
COLUMN_TYPES = {
    "Timestamp": "DateTime",
    "DeviceId": "String",
    "DeviceName": "String",
    "ActionType": "String",
    "FileName": "String",
    "FolderPath": "String",
    "SHA1": "String",
    "SHA256": "String",
    "MD5": "String",
    "FileSize": "Int64",
    "FileOriginUrl": "String",
    "InitiatingProcessFileName": "String",
    "InitiatingProcessCommandLine": "String",
    "InitiatingProcessAccountName": "String",
    "ReportId": "Int64",
}
SUPPORTED_FORM = (
    "DeviceFileEvents | where Column == 'value' [and ...] | order by Column "
    "[asc|desc] | project Column, ... | take N (operators ==, =~ and !=; sort by "
    "and limit are accepted too)"
)
MAX_QUERY_CHARS = 10000
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>-?[0-9]+)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>==|=~|!=|\||,)
      | (?P<symbol>\S)
    )""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    position: int


def unsupported(message: str) -> DefenderError:
    return DefenderError(
        400,
        f"{message}. The emulator runs only this form of query: {SUPPORTED_FORM}",
        "BadRequest",
    )


def run_query(
    query: Any, rows: list[dict[str, Any]]
) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """Run ``query`` on ``rows`` and return the response's Schema and Results."""
    if not isinstance(query, str) or not query.strip():
        raise DefenderError(
            400, "Query is required: a non-empty string", "MissingRequiredParameter"
        )
    if len(query) > MAX_QUERY_CHARS:
        raise unsupported(f"The query is longer than {MAX_QUERY_CHARS} characters")
    stages = _split_stages(_tokenize(query))
    source = stages[0]
    if [token.text for token in source] != [TABLE]:
        raise unsupported(
            f"The query must start with the table {TABLE}, got "
            f"'{' '.join(token.text for token in source)}'"
        )
    columns = list(COLUMN_TYPES)
    result = [dict(row) for row in rows]
    for stage in stages[1:]:
        result, columns = _apply(stage, result, columns)
    schema = [{"Name": name, "Type": COLUMN_TYPES[name]} for name in columns]
    results = [{name: _json_value(row[name]) for name in columns} for row in result]
    return schema, results


def _json_value(value: Any) -> Any:
    return defender_time(value) if isinstance(value, datetime) else value


def _tokenize(query: str) -> list[Token]:
    """Split ``query`` into tokens.

    A character that starts no other token becomes a ``symbol`` token, which
    the stage that contains it then rejects.
    """
    tokens = []
    position = 0
    while query[position:].strip():
        match = _TOKEN.match(query, position)
        assert match is not None  # the symbol group matches any other character
        kind = match.lastgroup
        assert kind is not None
        start = match.start(kind)
        tokens.append(Token(kind, match.group(kind), start))
        position = match.end()
    return tokens


def _split_stages(tokens: list[Token]) -> list[list[Token]]:
    stages: list[list[Token]] = [[]]
    for token in tokens:
        if token.kind == "op" and token.text == "|":
            stages.append([])
        else:
            stages[-1].append(token)
    if any(not stage for stage in stages):
        raise unsupported("The query has an empty stage between two '|'")
    return stages


def _string_value(token: Token) -> str:
    body = token.text[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _apply(
    stage: list[Token], rows: list[dict[str, Any]], columns: list[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    keyword = stage[0].text
    rest = stage[1:]
    if keyword == "where":
        return [row for row in rows if _where(rest, columns)(row)], columns
    if keyword in ("order", "sort"):
        if not rest or rest[0].text != "by":
            raise unsupported(f"'{keyword}' must be followed by 'by'")
        return _order(rest[1:], rows, columns), columns
    if keyword == "project":
        projected = _column_list(rest, columns, "project")
        return rows, projected
    if keyword in ("take", "limit"):
        if len(rest) != 1 or rest[0].kind != "number" or int(rest[0].text) < 0:
            raise unsupported(f"'{keyword}' takes one non-negative integer")
        return rows[: int(rest[0].text)], columns
    raise unsupported(f"The operator '{keyword}' is not supported")


def _column(token: Token, columns: list[str]) -> str:
    if token.kind != "name" or token.text not in columns:
        raise unsupported(
            f"Unknown column '{token.text}' at character {token.position}; "
            f"columns: {', '.join(columns)}"
        )
    return token.text


def _column_list(tokens: list[Token], columns: list[str], keyword: str) -> list[str]:
    names = []
    for index, token in enumerate(tokens):
        if index % 2 == 1:
            if token.text != ",":
                raise unsupported(f"'{keyword}' takes columns separated by commas")
            continue
        names.append(_column(token, columns))
    if not names or len(tokens) % 2 == 0:
        raise unsupported(f"'{keyword}' takes columns separated by commas")
    return names


def _comparisons(tokens: list[Token]) -> Iterator[list[Token]]:
    current: list[Token] = []
    for token in tokens:
        if token.kind == "name" and token.text == "and":
            yield current
            current = []
        else:
            current.append(token)
    yield current


def _where(tokens: list[Token], columns: list[str]) -> Callable[[dict[str, Any]], bool]:
    tests = []
    for comparison in _comparisons(tokens):
        if len(comparison) != 3 or comparison[1].text not in ("==", "=~", "!="):
            text = " ".join(token.text for token in comparison) or "(nothing)"
            raise unsupported(
                f"Unsupported condition '{text}': use Column == 'value' joined "
                "with 'and'"
            )
        left, operator, right = comparison
        column = _column(left, columns)
        tests.append(_comparison_test(column, operator.text, right))
    return lambda row: all(test(row) for test in tests)


def _comparison_test(
    column: str, operator: str, literal: Token
) -> Callable[[dict[str, Any]], bool]:
    kind = COLUMN_TYPES[column]
    if kind == "String" and literal.kind == "string":
        expected: Any = _string_value(literal)
    elif kind == "Int64" and literal.kind == "number" and operator != "=~":
        expected = int(literal.text)
    else:
        raise unsupported(
            f"Column {column} ({kind}) cannot be compared with {literal.text} "
            f"using {operator}"
        )

    def test(row: dict[str, Any]) -> bool:
        actual = row[column]
        if operator == "=~":
            equal = isinstance(actual, str) and actual.lower() == expected.lower()
        else:
            equal = actual == expected
        return equal if operator != "!=" else not equal

    return test


def _order(
    tokens: list[Token], rows: list[dict[str, Any]], columns: list[str]
) -> list[dict[str, Any]]:
    keys: list[tuple[str, bool]] = []
    for group in _split_commas(tokens):
        if not group or len(group) > 2:
            raise unsupported("'order by' takes Column [asc|desc], separated by commas")
        column = _column(group[0], columns)
        direction = group[1].text if len(group) == 2 else "desc"
        if direction not in ("asc", "desc"):
            raise unsupported(f"Sort direction must be asc or desc, got '{direction}'")
        keys.append((column, direction == "desc"))
    ordered = list(rows)
    # Stable sorts from the last key to the first give the multi-key order.
    # Nulls come first in ascending and last in descending order, as in KQL.
    for column, descending in reversed(keys):
        ordered.sort(
            key=lambda row, c=column: (
                row[c] is not None,
                row[c] if row[c] is not None else 0,
            ),
            reverse=descending,
        )
    return ordered


def _split_commas(tokens: list[Token]) -> list[list[Token]]:
    groups: list[list[Token]] = [[]]
    for token in tokens:
        if token.kind == "op" and token.text == ",":
            groups.append([])
        else:
            groups[-1].append(token)
    return groups
