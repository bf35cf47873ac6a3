"""The configuration reference lists every setting the app reads."""

from pathlib import Path

import pytest

import settings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


@pytest.mark.parametrize("setting", settings.SETTINGS, ids=lambda s: s.name)
def test_setting_documented(setting):
    assert f"| `{setting.name}` |" in DOC
