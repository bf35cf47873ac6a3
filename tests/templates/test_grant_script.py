"""Static checks of scripts/grant-defender-permissions.ps1.

The script changes Entra ID, so no test runs it. The tests parse it with
tree-sitter-powershell and inspect the syntax tree, and also use PowerShell's own parser
where pwsh is installed.
"""

import re

import pytest
import tree_sitter_powershell
from tree_sitter import Language, Parser

from .bicep_tree import REPO, walk

SCRIPT = REPO / "scripts" / "grant-defender-permissions.ps1"
DEFENDER_APP_ID = "fc780465-2017-40d4-a0c5-307022471b92"
ROLES = [
    "Machine.LiveResponse",
    "Machine.Read.All",
    "Library.Manage",
    "Alert.ReadWrite.All",
    "AdvancedQuery.Read.All",
]


_PARSER = Parser(Language(tree_sitter_powershell.language()))
SOURCE = SCRIPT.read_bytes() if SCRIPT.is_file() else b""
TREE = _PARSER.parse(SOURCE)


def _text(node):
    return SOURCE[node.start_byte : node.end_byte].decode()


def _code_text():
    """Return the script without its comments."""
    comments = [n for n in walk(TREE.root_node) if n.type == "comment"]
    text, cursor = [], 0
    for comment in comments:
        text.append(SOURCE[cursor : comment.start_byte].decode())
        cursor = comment.end_byte
    text.append(SOURCE[cursor:].decode())
    return "".join(text)


def _functions():
    functions = {}
    for node in walk(TREE.root_node):
        if node.type == "function_statement":
            name = next(c for c in node.named_children if c.type == "function_name")
            functions[_text(name)] = _text(node)
    return functions


def test_script_exists():
    assert SCRIPT.is_file()


def test_script_parses_cleanly():
    errors = [
        f"{n.start_point[0] + 1}:{n.start_point[1] + 1}"
        for n in walk(TREE.root_node)
        if n.type == "ERROR" or n.is_missing
    ]
    assert errors == []


def test_no_variable_followed_by_colon():
    """Strings use "${name}:" because PowerShell rejects "$name:" as an invalid
    drive-qualified variable, which the tree-sitter grammar accepts."""
    pattern = re.compile(r'"[^"\n]*\$(?![{(])\w+:(?!\w)')
    assert pattern.findall(_code_text()) == []


def test_finds_defender_by_app_id():
    assert DEFENDER_APP_ID in _code_text()


@pytest.mark.parametrize("role", ROLES)
def test_requests_role(role):
    assert f"'{role}'" in _code_text()


def test_has_dry_run_switch():
    assert re.search(r"\[switch\]\s*\$DryRun", _code_text())


def test_single_post_request():
    assert len(re.findall(r"-Method\s+POST", _code_text())) == 1


def test_post_only_in_assignment_function():
    posting = [name for name, body in _functions().items() if "-Method POST" in body]
    assert posting == ["Add-AppRoleAssignment"]


def test_post_follows_dry_run_return():
    body = _functions()["Add-AppRoleAssignment"]
    guard = body.find("if ($DryRun) {")
    early_return = body.find("return", guard)
    assert 0 <= guard < early_return < body.index("-Method POST")


def test_skips_assigned_roles():
    assert "ContainsKey($appRoleId)" in _code_text()


def test_resolves_roles_before_changes():
    code = _code_text()
    assert code.index("$appRoleIds[$roleValue] = ") < code.index(
        "Add-AppRoleAssignment -"
    )


@pytest.mark.parametrize(
    "fragment",
    [
        "AccessToken",
        "get-access-token",
        "Get-AzAccessToken",
        "Set-PSDebug",
        "Start-Transcript",
    ],
)
def test_never_handles_tokens(fragment):
    assert fragment.lower() not in _code_text().lower()


@pytest.mark.parametrize(
    "message",
    [
        "Service principal $PrincipalId not found",
        "WindowsDefenderATP service principal (appId $DefenderAppId) not found",
        "Application role $roleValue not found",
        "Insufficient privileges",
    ],
)
def test_reports_error(message):
    assert message in _code_text()
