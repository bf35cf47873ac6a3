"""Read Bicep templates through the tree-sitter-bicep grammar, for static checks.

No Bicep CLI is needed: these helpers look at the syntax tree only. They resolve plain
string literals and nothing else, so a check that needs an evaluated expression compares
the expression's source text instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

REPO = Path(__file__).resolve().parents[2]
BICEP_DIR = REPO / "bicep"
MAIN = BICEP_DIR / "main.bicep"
MODULES = BICEP_DIR / "modules"

_PARSER = Parser(Language(tree_sitter_bicep.language()))


@dataclass(frozen=True)
class BicepFile:
    """A parsed .bicep file and helpers over its top-level declarations."""

    path: Path
    source: bytes
    root: Node

    def text(self, node: Node) -> str:
        return self.source[node.start_byte : node.end_byte].decode()

    def syntax_errors(self) -> list[str]:
        """Return every ERROR or MISSING node as 'line:column: snippet'."""
        problems = []
        for node in walk(self.root):
            if node.type == "ERROR" or node.is_missing:
                line, column = node.start_point
                kind = f"missing {node.type}" if node.is_missing else "error"
                snippet = self.text(node)[:60].replace("\n", "\\n")
                problems.append(f"{line + 1}:{column + 1}: {kind} {snippet!r}")
        return problems

    def declarations(self, kind: str) -> dict[str, Node]:
        """Map name to node for top-level declarations of one kind, e.g. 'param'."""
        found = {}
        for node in self.root.named_children:
            if node.type == f"{kind}_declaration":
                name = next(c for c in node.named_children if c.type == "identifier")
                found[self.text(name)] = node
        return found

    def decorator_names(self, declaration: Node) -> list[str]:
        """Return the decorators written above a declaration, e.g. ['description']."""
        previous = declaration.prev_named_sibling
        if previous is None or previous.type != "decorators":
            return []
        names = []
        for decorator in previous.named_children:
            call = next(c for c in decorator.named_children)
            function = call.child_by_field_name("function")
            names.append(self.text(function if function is not None else call))
        return names

    def body(self, declaration: Node) -> Node:
        """Return the value of a var, param default, resource, module or output."""
        value = declaration.named_children[-1]
        if value.type == "if_statement":
            value = value.named_children[-1]
        return value

    def variable_object(self, name: str) -> dict[str, Node]:
        """Return the properties of `var name = { ... }`."""
        value = self.body(self.declarations("variable")[name])
        assert value.type == "object", f"var {name} in {self.path.name} is no object"
        return object_properties(self, value)

    def resources(self, type_prefix: str) -> list[Node]:
        """Return the bodies of resources whose type starts with type_prefix."""
        bodies = []
        for node in self.declarations("resource").values():
            type_node = next(c for c in node.named_children if c.type == "string")
            if self.text(type_node).strip("'").startswith(type_prefix):
                bodies.append(self.body(node))
        return bodies

    def module_paths(self) -> list[str]:
        """Return the file paths that module declarations load."""
        paths = []
        for node in self.declarations("module").values():
            path_node = next(c for c in node.named_children if c.type == "string")
            paths.append(self.text(path_node).strip("'"))
        return paths


@cache
def load(path: Path) -> BicepFile:
    source = path.read_bytes()
    return BicepFile(path, source, _PARSER.parse(source).root_node)


def all_files() -> list[Path]:
    return sorted(BICEP_DIR.rglob("*.bicep"))


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def object_properties(bicep: BicepFile, obj: Node) -> dict[str, Node]:
    """Map property name to value node for one Bicep object literal."""
    properties = {}
    for prop in obj.named_children:
        if prop.type != "object_property":
            continue
        key, value = prop.named_children[0], prop.named_children[-1]
        properties[bicep.text(key).strip("'")] = value
    return properties


def find_property(bicep: BicepFile, node: Node, key: str) -> list[Node]:
    """Return the values of every property named key anywhere below node."""
    values = []
    for child in walk(node):
        if child.type == "object_property":
            if bicep.text(child.named_children[0]).strip("'") == key:
                values.append(child.named_children[-1])
    return values


def literal(bicep: BicepFile, node: Node) -> str | bool | int | None:
    """Return the value of a plain string, boolean or integer literal, else None."""
    if node.type == "string":
        parts = node.named_children
        if all(part.type == "string_content" for part in parts):
            return "".join(bicep.text(part) for part in parts)
        return None
    if node.type == "boolean":
        return bicep.text(node) == "true"
    if node.type == "number":
        return int(bicep.text(node))
    return None


def string_items(bicep: BicepFile, node: Node) -> list[str]:
    """Return the source text of the items of an array literal, strings unquoted."""
    assert node.type == "array", f"expected an array, got {bicep.text(node)[:40]!r}"
    return [bicep.text(item).strip("'") for item in node.named_children]
