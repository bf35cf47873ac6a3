"""Fixtures for the Live Response script tests: a host-like PATH.

Azurite comes from tests/azurite.py through the root conftest.
"""

import os
import shutil
from pathlib import Path

import pytest

from tests.azurite import CONTAINER, DEV_ACCOUNT, DEV_ACCOUNT_KEY, REPO, Azurite

__all__ = ["CONTAINER", "DEV_ACCOUNT", "DEV_ACCOUNT_KEY", "REPO", "Azurite"]

# Programs that a Defender Linux host cannot be relied on to have. The scripts
# run with a PATH from which these are missing.
HOST_MISSING_PROGRAMS = ("jq", "python", "perl", "node", "nodejs", "openssl", "pwsh")


@pytest.fixture(scope="session")
def host_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a folder of links to every program on PATH except HOST_MISSING_PROGRAMS.

    Used as the whole PATH of a script run, so a test fails if the script needs
    jq, python or another program that Defender's Linux hosts may lack.
    """
    folder = tmp_path_factory.mktemp("host-bin")
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not Path(directory).is_dir():
            continue
        for entry in Path(directory).iterdir():
            name = entry.name
            if name.startswith(HOST_MISSING_PROGRAMS) or (folder / name).exists():
                continue
            if entry.is_file() and os.access(entry, os.X_OK):
                (folder / name).symlink_to(entry.resolve())
    for required in ("bash", "curl", "sha256sum"):
        assert (folder / required).exists(), f"{required} is not installed"
    assert shutil.which("jq", path=str(folder)) is None
    return folder
