"""Static tests of scripts/liveresponse/anyrun-upload.ps1.

PowerShell is not installed here, so the script is never run. The tests parse
it with the tree-sitter PowerShell grammar (a dev dependency) and check its
text for the contract shared with anyrun-upload.sh.
"""

import re

import pytest

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


def _function_body(code: str, name: str) -> str:
    start = code.index(f"function {name}")
    next_function = code.find("\nfunction ", start + 1)
    return code[start : next_function if next_function != -1 else len(code)]


def test_ps1_parses_without_errors(source: str):
    import tree_sitter
    import tree_sitter_powershell as grammar

    parser = tree_sitter.Parser(tree_sitter.Language(grammar.language()))

    tree = parser.parse(source.encode("utf-8"))

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
