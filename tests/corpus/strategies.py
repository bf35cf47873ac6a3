"""Hypothesis strategies for webhook requests: arbitrary JSON and mutated bodies.

A mutated body starts from a valid trigger body (every sample in
samples/incidents/ and a few accepted corpus cases) and gets one to four
mutations: a key dropped, a value replaced by arbitrary JSON or by a value of
another type, garbage inserted, a value nested deeply, an entity duplicated,
or the body wrapped in {"Body": ...}.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tests.corpus.cases import JSON, build, nested

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "incidents"
SEED_CASES = ("file-valid", "url-defanged", "alerts-defender", "wrapper-body")

# json.loads raises RecursionError at about 1000 levels less the caller's
# stack, which the webhook does not catch yet (the corpus case
# json-nested-too-deep). Mutations stay well below that.
MAX_NESTING = 400

# Mostly the right type, so that most requests reach the validator.
CONTENT_TYPES = (
    *[JSON] * 12,
    "application/json; charset=utf-8",
    "Application/JSON",
    "text/plain",
    "application/x-www-form-urlencoded",
    "",
    None,
)

# Text with any code point, unpaired surrogates included: "\ud800" is valid
# JSON and decodes to one.
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(any_text, children, max_size=5)
    ),
    max_leaves=25,
)


def seed_bodies() -> list[Any]:
    """Return the valid bodies that mutations start from."""
    bodies = [json.loads(path.read_text()) for path in sorted(SAMPLES.glob("*.json"))]
    by_name = {case.name: case for case in build()}
    bodies += [by_name[name].body for name in SEED_CASES]
    return bodies


SEEDS = seed_bodies()


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Return the path of every value inside `value`, the root included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _get(value: Any, path: tuple) -> Any:
    for key in path:
        value = value[key]
    return value


def _other_types(value: Any) -> list[Any]:
    """Return values of other JSON types than `value`, some built from it."""
    text = json.dumps(value)[:100]
    candidates = [None, True, 0, -1, 2**64, 1.5, "", text, [], {}, [value]]
    candidates.append({"value": value})
    return [c for c in candidates if type(c) is not type(value)]


@st.composite
def mutated_bodies(draw: st.DrawFn) -> Any:
    """Draw a valid trigger body with one to four mutations applied."""
    body = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    nested_once = False
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(_paths(body)))
        operation = draw(
            st.sampled_from(
                ("drop", "replace", "retype", "garbage", "nest", "duplicate", "wrap")
            )
        )
        if operation == "wrap" or not path:
            body = {draw(st.sampled_from(("Body", "body"))): body}
            continue
        parent, key = _get(body, path[:-1]), path[-1]
        current = parent[key]
        if operation == "drop":
            del parent[key]
        elif operation == "replace":
            parent[key] = draw(json_values)
        elif operation == "retype":
            parent[key] = draw(st.sampled_from(_other_types(current)))
        elif operation == "garbage" and isinstance(current, dict):
            current[draw(any_text)] = draw(json_values)
        elif operation == "garbage" and isinstance(current, list):
            position = draw(st.integers(min_value=0, max_value=len(current)))
            current.insert(position, draw(json_values))
        elif operation == "nest" and not nested_once:
            nested_once = True
            depth = draw(st.integers(min_value=1, max_value=MAX_NESTING))
            parent[key] = nested(depth, current)
        elif operation == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(current))
    return body


@dataclass(frozen=True)
class WebhookRequest:
    """One drawn request: its body bytes and Content-Type header (None: absent)."""

    payload: bytes
    content_type: str | None


def _encode(body: Any, ascii_only: bool) -> bytes:
    # Without ensure_ascii an unpaired surrogate cannot be encoded as UTF-8, so
    # surrogatepass writes bytes that are not UTF-8, as a broken client might.
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def webhook_requests(draw: st.DrawFn) -> WebhookRequest:
    """Draw a request: a mutated trigger body, arbitrary JSON or arbitrary bytes."""
    source = draw(
        st.sampled_from(("mutated", "mutated", "mutated", "json", "bytes", "cut"))
    )
    if source == "bytes":
        payload = draw(st.binary(max_size=200))
    else:
        body = draw(json_values) if source == "json" else draw(mutated_bodies())
        payload = _encode(body, draw(st.booleans()))
        if source == "cut":
            payload = payload[: draw(st.integers(min_value=0, max_value=len(payload)))]
    return WebhookRequest(payload, draw(st.sampled_from(CONTENT_TYPES)))
