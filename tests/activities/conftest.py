"""Activities run for real against Azurite and the emulators, in this process."""

import uuid

import pytest

import clients
from activities import records
from emulators import EmulatorConfig, start_in_thread
from tests.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY

ANYRUN_KEY = "anyrun-key-for-activity-tests"
BEARER = "bearer-token-for-activity-tests"
CONTAINER = "uploads-activities"


@pytest.fixture(scope="module")
def emulators():
    config = EmulatorConfig(anyrun_api_key=ANYRUN_KEY, bearer_token=BEARER, speed=600)
    with start_in_thread(config) as thread:
        yield thread


@pytest.fixture
def connector(monkeypatch, azurite, azurite_tables, emulators):
    """Point the connector's settings at the emulators and Azurite; reset clients."""
    settings = {
        "ANYRUN_API_KEY": ANYRUN_KEY,
        "ANYRUN_BASE_URL": emulators.urls["anyrun"],
        "SENTINEL_ARM_BASE_URL": emulators.urls["sentinel"],
        "SENTINEL_TI_BASE_URL": emulators.urls["sentinel"],
        "DEFENDER_BASE_URL": emulators.urls.get("defender", "http://127.0.0.1:9"),
        "LOCAL_BEARER_TOKEN": BEARER,
        "UPLOAD_BLOB_ENDPOINT": f"http://127.0.0.1:{azurite.port}/{DEV_ACCOUNT}",
        "UPLOAD_ACCOUNT_KEY": DEV_ACCOUNT_KEY,
        "UPLOAD_CONTAINER": CONTAINER,
        "ANALYSIS_TABLE_ENDPOINT": azurite_tables.endpoint,
        "ANALYSIS_TABLE_ACCOUNT_KEY": DEV_ACCOUNT_KEY,
        # A table of its own per test, so that records and slots start empty.
        "ANALYSIS_TABLE_NAME": "t" + uuid.uuid4().hex[:20],
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    clients.reset()
    records.forget_limit()
    yield emulators
    clients.reset()
    records.forget_limit()


def activity(function):
    """Return the plain Python function behind a registered activity."""
    return function.build().get_user_function()
