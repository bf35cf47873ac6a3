"""Shared test setup: the repository root on sys.path and safe app settings."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Unit tests never reach a real service: every base URL is a loopback address
# that nothing listens on unless a test starts an emulator there.
os.environ.setdefault("ANYRUN_API_KEY", "unit-test-anyrun-key")
os.environ.setdefault("ANYRUN_BASE_URL", "http://127.0.0.1:9")
os.environ.setdefault("SENTINEL_ARM_BASE_URL", "http://127.0.0.1:9")
os.environ.setdefault("SENTINEL_TI_BASE_URL", "http://127.0.0.1:9")
os.environ.setdefault("DEFENDER_BASE_URL", "http://127.0.0.1:9")
os.environ.setdefault("LOCAL_BEARER_TOKEN", "unit-test-bearer-token")

# A real Azurite blob endpoint, shared by every test that uses the `azurite` fixture.
from tests.azurite import azurite, azurite_tables  # noqa: E402, F401
