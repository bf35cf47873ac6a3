"""Static tests of scripts/liveresponse/anyrun-upload.ps1.

PowerShell is not installed here, so the script is never run. The tests parse
it with the tree-sitter PowerShell grammar (a dev dependency) and check its
text for the contract shared with anyrun-upload.sh, and its retry settings
against the emulator's Python performance of it (emulators/defender/windows.py).
"""

import re
from collections.abc import Iterator

import pytest
import tree_sitter
import tree_sitter_powershell as grammar

from emulators.defender import windows

from .conftest import REPO

PS1 = REPO / "scripts" / "liveresponse" / "anyrun-upload.ps1"
BASH = REPO / "scripts" / "liveresponse" / "anyrun-upload.sh"
URL_VARIABLES = re.compile(
    r"\$(script:BlobUrl|script:BlobQuery|Url|uri)\b", re.IGNORECASE
)
OUTPUT_COMMANDS = re.compile(
    r"Write-(Host|Output|Verbose|Debug|Information|Warning|Error|ScriptWarning)"
    r"|Out-(File|Host|String|Default)|\becho\b|\[Console\]::|Add-Content|Set-Content"
    r"|Start-Transcript|Tee-Object",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def source() -> str:
    return PS1.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def code(source: str) -> str:
    """Return the script without its comment-based help and # comments."""
    without_block = re.sub(r"<#.*?#>", "", source, flags=re.DOTALL)
    return "\n".join(
        line.split("#", 1)[0] if line.lstrip().startswith("#") else line
        for line in without_block.splitlines()
    )


@pytest.fixture(scope="module")
def tree(source: str) -> tree_sitter.Tree:
    parser = tree_sitter.Parser(tree_sitter.Language(grammar.language()))
    return parser.parse(source.encode("utf-8"))


def _nodes(node: tree_sitter.Node, node_type: str) -> Iterator[tree_sitter.Node]:
    """Yield ``node`` and its descendants of type ``node_type``, in source order."""
    if node.type == node_type:
        yield node
    for child in node.children:
        yield from _nodes(child, node_type)


def _function_node(tree: tree_sitter.Tree, name: str) -> tree_sitter.Node:
    for function in _nodes(tree.root_node, "function_statement"):
        names = [c.text for c in function.children if c.type == "function_name"]
        if names == [name.encode()]:
            return function
    raise AssertionError(f"function {name} not found")


def _statements(block: tree_sitter.Node) -> list[str]:
    """Return the text of each statement directly in a block's statement list."""
    statement_list = next(_nodes(block, "statement_list"))
    return [
        child.text.decode()
        for child in statement_list.children
        if child.type != "comment"
    ]


def _if_condition(node: tree_sitter.Node) -> str | None:
    """Return the condition of the nearest if statement around ``node``."""
    parent = node.parent
    while parent is not None and parent.type != "if_statement":
        parent = parent.parent
    if parent is None:
        return None
    return next(c for c in parent.children if c.type == "pipeline").text.decode()


def _ps1_array(code: str, variable: str) -> list[str]:
    match = re.search(rf"^\${variable} = @\((.*)\)$", code, flags=re.MULTILINE)
    assert match is not None, variable
    return [item.strip().strip("'") for item in match.group(1).split(",")]


def _function_body(code: str, name: str) -> str:
    start = code.index(f"function {name}")
    next_function = code.find("\nfunction ", start + 1)
    return code[start : next_function if next_function != -1 else len(code)]


def test_ps1_parses_without_errors(tree: tree_sitter.Tree):
    assert not tree.root_node.has_error


def test_ps1_is_ascii(source: str):
    # Windows PowerShell 5.1 reads a file without a BOM as the ANSI code page.
    assert source.isascii()


def test_ps1_single_payload_parameter(code: str):
    param_block = re.search(r"^param\((.*?)^\)", code, flags=re.DOTALL | re.MULTILINE)

    assert param_block is not None
    assert re.findall(r"\$\w+", param_block.group(1)) == ["$Payload"]
    assert "[string]$Payload" in param_block.group(1)
    assert "Position = 0" in param_block.group(1)


def test_ps1_url_never_output(code: str):
    leaking = [
        line.strip()
        for line in code.splitlines()
        if URL_VARIABLES.search(line) and OUTPUT_COMMANDS.search(line)
    ]

    assert leaking == []


def test_ps1_single_stdout_write(code: str):
    writes = re.findall(r"\[Console\]::Out\.Write\w*\((.*)\)", code)

    assert writes == ["(ConvertTo-AsciiJson $script:Result)"]


def test_ps1_result_json_compressed(code: str):
    assert "ConvertTo-Json -InputObject $Value -Compress" in code


def test_ps1_main_output_discarded(code: str):
    assert "$null = Invoke-Upload $Payload" in code


def test_ps1_cleanup_in_finally(code: str):
    assert re.search(r"\}\s*finally\s*\{\s*Remove-PrivateState\s*\}", code)


def test_ps1_cleanup_removes_folder_then_exclusion(code: str):
    body = _function_body(code, "Remove-PrivateState")

    folder = body.index("Remove-Item -LiteralPath $script:WorkDir -Recurse -Force")
    exclusion = body.index("Remove-MpPreference -ExclusionPath $script:ExclusionPath")
    assert folder < exclusion


def test_ps1_exclusion_added(code: str):
    assert "Add-MpPreference -ExclusionPath $script:WorkDir" in code


def test_ps1_acl_user_and_system_only(code: str):
    body = _function_body(code, "New-PrivateFolder")

    assert "SetAccessRuleProtection($true, $false)" in body
    assert "'S-1-5-18'" in body
    assert "WindowsIdentity]::GetCurrent().User" in body
    assert "CreateDirectory($path, $security)" in body


def test_ps1_restore_with_mpcmdrun(code: str):
    assert (
        "@('-Restore', '-FilePath', $Arguments.Path, '-Path', $restoreFolder)" in code
    )
    assert (
        "@('-Restore', '-Name', $Arguments.ThreatName, '-All', '-Path', $restoreFolder)"
        in code
    )


def test_ps1_hash_with_get_filehash(code: str):
    assert "Get-FileHash -LiteralPath $Path -Algorithm SHA256" in code


def test_ps1_no_whole_file_reads(code: str):
    for pattern in (
        "ReadAllBytes",
        "ReadAllText",
        "Get-Content",
        "-InFile",
        "Invoke-RestMethod",
    ):
        assert pattern not in code, pattern


def test_ps1_no_powershell7_syntax(code: str):
    # Operators and options that Windows PowerShell 5.1 does not have.
    for pattern in (
        r"\?\?",
        r"\?\.",
        r"\s&&\s",
        r"\s\|\|\s",
        r"-AsHashtable",
        r"-Parallel",
    ):
        assert not re.search(pattern, code), pattern


def test_ps1_storage_headers(code: str):
    assert "$StorageApiVersion = '2021-08-06'" in code
    assert "'x-ms-blob-type' = 'BlockBlob'" in code
    assert "'application/octet-stream'" in code


def test_ps1_block_upload_queries(code: str):
    assert '"&comp=block&blockid=$blockId"' in code
    assert "'&comp=blocklist'" in code
    assert "$BlockSize = 4MB" in code


def test_ps1_streams_request_body(code: str):
    assert "$request.AllowWriteStreamBuffering = $false" in code


def test_ps1_http_only_for_loopback(code: str):
    assert "$uri.Host -eq '127.0.0.1' -or $uri.Host -eq 'localhost'" in code


def test_ps1_reasons_subset_of_bash(code: str):
    ps1_reasons = set(re.findall(r"New-Failure '(\w+)'", code))
    bash_reasons = set(re.findall(r"\bfail (\w+) ", BASH.read_text()))

    assert ps1_reasons - bash_reasons == set()
    assert "hash_mismatch" in ps1_reasons


def test_ps1_reads_bash_fields(code: str):
    for field in ("path", "sha256", "sha1", "url", "max_bytes"):
        assert f"'{field}'" in code, field


def test_ps1_retry_settings(code: str):
    assert "$MaxPutAttempts = 5" in code
    assert _ps1_array(code, "RetryDelaysSeconds") == ["1", "2", "4", "8"]
    assert _ps1_array(code, "RetryStatusCodes") == [
        "408",
        "429",
        "500",
        "502",
        "503",
        "504",
    ]
    assert _ps1_array(code, "RetryWebStatuses") == [
        "ConnectFailure",
        "Timeout",
        "ConnectionClosed",
        "ReceiveFailure",
        "SendFailure",
        "KeepAliveFailure",
        "PipelineFailure",
    ]


def test_ps1_retry_settings_match_emulator(code: str):
    delays = [float(item) for item in _ps1_array(code, "RetryDelaysSeconds")]
    statuses = {int(item) for item in _ps1_array(code, "RetryStatusCodes")}
    web_statuses = set(_ps1_array(code, "RetryWebStatuses"))

    assert f"$MaxPutAttempts = {windows.MAX_PUT_ATTEMPTS}" in code
    assert tuple(delays) == windows.RETRY_DELAYS_SECONDS
    assert statuses == windows.RETRY_STATUS_CODES
    assert web_statuses == windows.RETRY_WEB_STATUSES


def test_ps1_put_retry_loop(tree: tree_sitter.Tree):
    function = _function_node(tree, "Invoke-BlobPut")
    body = next(_nodes(function, "script_block_body"))
    loops = list(_nodes(body, "for_statement"))
    loop = _statements(loops[0])

    # The start position is taken once, before the first attempt.
    assert _statements(body)[0] == "$startPosition = $Source.Position"
    assert len(loops) == 1
    assert "$attempt = 1" in loops[0].text.decode()
    # Each attempt gets the time left in the budget as its timeout.
    assert loop[0].startswith("$remainingMilliseconds = ")
    assert (
        loop[2]
        == "$timeout = [Math]::Min($RequestTimeoutMilliseconds, $remainingMilliseconds)"
    )
    assert loop[3].startswith("$failure = Send-BlobPutAttempt ")
    assert loop[3].endswith(" $Source $Length $timeout")
    assert loop[5].startswith("if ($attempt -ge $MaxPutAttempts)")
    assert loop[6] == "$delay = $RetryDelaysSeconds[$attempt - 1]"
    assert loop[7].startswith(
        "if ($script:Stopwatch.Elapsed.TotalSeconds + $delay -ge $TimeBudgetSeconds)"
    )
    assert loop[9] == "Start-Sleep -Seconds $delay"
    # The rewind comes last, so every retry sends the same bytes again.
    assert loop[10] == "$Source.Position = $startPosition"
    assert len(loop) == 11


def test_ps1_retry_only_listed_failures(tree: tree_sitter.Tree):
    function = _function_node(tree, "Send-BlobPutAttempt")
    returns = [
        node
        for node in _nodes(function, "flow_control_statement")
        if node.children[0].type == "return"
    ]
    conditions = {node.text.decode(): set() for node in returns}
    for node in returns:
        conditions[node.text.decode()].add(_if_condition(node))

    assert conditions == {
        "return $null": {"$status -eq 201"},
        "return $message": {
            "$RetryWebStatuses -contains [string]$webError.Status",
            "$RetryStatusCodes -contains $status",
        },
    }


def test_ps1_retry_failure_message(code: str):
    body = _function_body(code, "Invoke-BlobPut")

    assert '"$failure after $attempt attempts"' in body
    assert 'Write-ScriptWarning "$failure; retrying in $delay s' in body
