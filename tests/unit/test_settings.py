"""Settings: defaults, validation errors that name the variable, emulator rules."""

import pytest

import settings
from settings import SettingsError, load

BASE = {"ANYRUN_API_KEY": "k"}


def test_defaults_target_azure():
    loaded = load(BASE)
    assert loaded.arm_base_url == "https://management.azure.com"
    assert loaded.uses_emulators is False
    assert loaded.url_options["opt_timeout"] == 120


def test_missing_key_names_variable():
    with pytest.raises(SettingsError, match="ANYRUN_API_KEY is missing"):
        load({})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("URL_OPT_TIMEOUT", "5", "URL_OPT_TIMEOUT must be between 10 and 660"),
        ("URL_OPT_TIMEOUT", "ten", "URL_OPT_TIMEOUT must be a whole number"),
        ("OPT_PRIVACY_TYPE", "secret", "OPT_PRIVACY_TYPE must be one of"),
        ("OPT_NETWORK_TOR", "maybe", "OPT_NETWORK_TOR must be true or false"),
        ("URL_ENV_BITNESS", "48", "URL_ENV_BITNESS must be 32 or 64"),
        ("INDICATOR_REPUTATIONS", "clean", "INDICATOR_REPUTATIONS must list"),
        ("ANYRUN_BASE_URL", "http://api.any.run", "ANYRUN_BASE_URL must use https"),
        ("ANYRUN_BASE_URL", "api.any.run", "ANYRUN_BASE_URL must be an absolute"),
        ("MAX_OBJECTS_PER_INCIDENT", "0", "MAX_OBJECTS_PER_INCIDENT must be between"),
    ],
)
def test_invalid_value_names_variable(name, value, message):
    with pytest.raises(SettingsError, match=message):
        load({**BASE, name: value})


def test_emulators_need_all_loopback():
    env = {
        **BASE,
        "SENTINEL_ARM_BASE_URL": "http://127.0.0.1:1",
        "LOCAL_BEARER_TOKEN": "t",
    }
    with pytest.raises(SettingsError, match="point all of them at the emulators"):
        load(env)


LOOPBACK = {
    "SENTINEL_ARM_BASE_URL": "http://127.0.0.1:1",
    "SENTINEL_TI_BASE_URL": "http://127.0.0.1:2",
    "DEFENDER_BASE_URL": "http://127.0.0.1:3",
}


def test_emulators_need_static_token():
    env = {**BASE, **LOOPBACK}
    with pytest.raises(SettingsError, match="LOCAL_BEARER_TOKEN is missing"):
        load(env)


def test_static_token_refused_in_azure():
    with pytest.raises(SettingsError, match="LOCAL_BEARER_TOKEN is set"):
        load({**BASE, "LOCAL_BEARER_TOKEN": "t"})


def test_emulators_accepted():
    env = {**BASE, **LOOPBACK, "SENTINEL_TI_BASE_URL": "http://localhost:2"}
    assert load({**env, "LOCAL_BEARER_TOKEN": "t"}).uses_emulators is True


def test_error_never_contains_secret():
    with pytest.raises(SettingsError) as caught:
        load({"ANYRUN_API_KEY": "super-secret-value", "URL_OPT_TIMEOUT": "x"})
    assert "super-secret-value" not in str(caught.value)


def test_registry_names_unique():
    names = [s.name for s in settings.SETTINGS]
    assert len(names) == len(set(names))


def test_plan_options_has_no_secret():
    text = str(load({**BASE, "ANYRUN_API_KEY": "super-secret-value"}).plan_options())
    assert "super-secret-value" not in text


def test_account_key_only_for_azurite():
    env = {**BASE, "UPLOAD_BLOB_ENDPOINT": "https://acct.blob.core.windows.net"}
    with pytest.raises(SettingsError, match="UPLOAD_ACCOUNT_KEY is set"):
        load({**env, "UPLOAD_ACCOUNT_KEY": "a2V5"})


def test_file_options_per_os():
    options = load(BASE).file_options
    assert options["windows"]["env_os"] == "windows"
    assert options["linux"]["env_os"] == "linux"
    assert options["linux"]["env_version"] == "22.04.2"
    assert options["windows"]["opt_timeout"] == 240


def test_files_disabled_without_endpoint():
    assert load(BASE).plan_options()["files_enabled"] is False


SECRET_MARKER = "SECRETMARKER0123456789"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (
            "UPLOAD_BLOB_ENDPOINT",
            "DefaultEndpointsProtocol=https;AccountName=a;"
            f"AccountKey={SECRET_MARKER}==;EndpointSuffix=core.windows.net",
        ),
        ("ANYRUN_BASE_URL", f"ftp://x.example/?sig={SECRET_MARKER}"),
        (
            "UPLOAD_BLOB_ENDPOINT",
            f"http://a.blob.core.windows.net/?sig={SECRET_MARKER}",
        ),
    ],
)
def test_bad_url_error_hides_value(name, value):
    with pytest.raises(settings.SettingsError) as error:
        settings.load({"ANYRUN_API_KEY": "k", name: value})
    assert name in str(error.value)
    assert SECRET_MARKER not in str(error.value)


def test_unresolved_key_vault_reference_rejected():
    reference = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/x/)"
    with pytest.raises(settings.SettingsError) as error:
        settings.load({"ANYRUN_API_KEY": reference})
    assert "ANYRUN_API_KEY" in str(error.value)
    assert "Key Vault Secrets User" in str(error.value)


def test_blank_api_key_is_missing():
    with pytest.raises(settings.SettingsError) as error:
        settings.load({"ANYRUN_API_KEY": "   "})
    assert "ANYRUN_API_KEY is missing" in str(error.value)


def test_unparsable_url_is_settings_error():
    with pytest.raises(settings.SettingsError) as error:
        settings.load({"ANYRUN_API_KEY": "k", "ANYRUN_BASE_URL": "http://[::1"})
    assert "ANYRUN_BASE_URL is not a valid URL" in str(error.value)
