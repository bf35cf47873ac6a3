"""Function key: from the environment, or generated once into DIR/function_key."""

from __future__ import annotations

import stat

from devhost.keys import KEY_ENV, key_matches, load_function_key


def test_key_file_created(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    key, path = load_function_key(tmp_path)
    assert path == tmp_path / "function_key"
    assert path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_key_file_reused(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    first, _ = load_function_key(tmp_path)
    second, _ = load_function_key(tmp_path)
    assert first == second


def test_key_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "from-env")
    key, path = load_function_key(tmp_path)
    assert key == "from-env"
    assert path is None
    assert not (tmp_path / "function_key").exists()


def test_key_mismatch():
    assert not key_matches("secret", "other")
    assert not key_matches("secret", None)
    assert key_matches("secret", "secret")
