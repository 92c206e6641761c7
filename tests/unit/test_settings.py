import pytest

from shared.settings import DEFAULT_GREETING, DEFAULT_SMS_REPLY, Settings, SettingsError
from tests.helpers import AUTH_TOKEN, env


def test_defaults() -> None:
    s = Settings.from_env(env())
    assert s.key_vault_url is None
    assert (s.account_sid_secret_name, s.auth_token_secret_name) == (
        "twilio-account-sid", "twilio-auth-token")
    assert s.api_base_url == "https://api.twilio.com"
    assert s.outbound_queue_name == "twilio-outbound"
    assert s.rejected_queue_name == "twilio-outbound-rejected"
    assert s.poison_queue_name == "twilio-outbound-poison"
    assert s.voice_greeting == DEFAULT_GREETING
    assert s.sms_auto_reply == DEFAULT_SMS_REPLY
    assert s.storage.connection_string == "UseDevelopmentStorage=true"


def test_empty_auto_reply_means_no_reply() -> None:
    assert Settings.from_env(env(SMS_AUTO_REPLY="")).sms_auto_reply is None


def test_key_vault_needs_no_local_credentials() -> None:
    s = Settings.from_env(env(KEY_VAULT_URL="https://kv-x.vault.azure.net/",
                              TWILIO_ACCOUNT_SID=None, TWILIO_AUTH_TOKEN=None))
    assert s.key_vault_url == "https://kv-x.vault.azure.net"
    assert s.uses_key_vault


def test_identity_based_storage() -> None:
    s = Settings.from_env(env(AzureWebJobsStorage=None,
                              AzureWebJobsStorage__queueServiceUri="https://st1.queue.core.windows.net",
                              AzureWebJobsStorage__credential="managedidentity",
                              AzureWebJobsStorage__clientId="cid"))
    assert s.storage.connection_string is None
    assert s.storage.table_service_uri == "https://st1.table.core.windows.net"
    assert s.storage.client_id == "cid"


@pytest.mark.parametrize("name, value, fragment", [
    ("TWILIO_FROM_NUMBER", "555-1234", "TWILIO_FROM_NUMBER must be an E.164 number"),
    ("WEBHOOK_BASE_URL", "https://x.net/api", "WEBHOOK_BASE_URL must be an origin"),
    ("WEBHOOK_BASE_URL", "x.net", "WEBHOOK_BASE_URL must be an absolute"),
    ("KEY_VAULT_URL", "http://kv.vault.azure.net", "KEY_VAULT_URL must be an absolute https URL"),
    ("OUTBOUND_QUEUE_NAME", "Bad_Queue", "OUTBOUND_QUEUE_NAME must be a storage queue name"),
    ("OUTBOUND_QUEUE_NAME", "q" * 55, "OUTBOUND_QUEUE_NAME must be a storage queue name"),
    ("TWILIO_AUTH_TOKEN_SECRET_NAME", "bad name", "TWILIO_AUTH_TOKEN_SECRET_NAME must be a Key"),
    ("TWILIO_SECRETS_TTL_SECONDS", "soon", "TWILIO_SECRETS_TTL_SECONDS must be a number"),
    ("AzureWebJobsStorage", "", "AzureWebJobsStorage is not set"),
])
def test_malformed_setting_is_named(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env(**{name: value}))
    assert fragment in str(err.value)


def test_missing_credentials_say_what_to_set() -> None:
    with pytest.raises(SettingsError, match="set KEY_VAULT_URL"):
        Settings.from_env(env(TWILIO_ACCOUNT_SID=None, TWILIO_AUTH_TOKEN=None))


def test_unresolved_key_vault_reference_is_explained_without_its_value() -> None:
    ref = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/twilio-auth-token/)"
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env(TWILIO_AUTH_TOKEN=ref))
    message = str(err.value)
    assert message.startswith("TWILIO_AUTH_TOKEN is an unresolved Key Vault reference")
    assert "Key Vault Secrets User" in message
    assert "SecretUri" not in message


def test_repr_hides_secrets() -> None:
    s = Settings.from_env(env())
    assert AUTH_TOKEN not in repr(s)
    assert "UseDevelopmentStorage" not in repr(s)


def test_local_settings_example_is_valid_and_names_only_known_settings() -> None:
    import json
    from pathlib import Path

    from shared.settings import SETTING_NAMES

    values = json.loads((Path(__file__).parents[2] / "local.settings.json.example").read_text()
                        )["Values"]
    assert set(values) - SETTING_NAMES == {"FUNCTIONS_WORKER_RUNTIME"}
    settings = Settings.from_env(values)
    assert settings.sms_keywords == {"HOURS": "We are open 9 to 5.", "ADDRESS": "1 Main St"}
    assert settings.key_vault_url is None and settings.call_flow is not None


def test_every_setting_the_app_reads_is_in_the_settings_page() -> None:
    from pathlib import Path

    from shared.settings import SETTING_NAMES

    section = (Path(__file__).resolve().parents[2] / "docs" / "settings.md").read_text()
    assert section.startswith("# Settings\n")
    assert sorted(n for n in SETTING_NAMES if f"`{n}`" not in section) == []


# -- TWILIO_API_BASE_URL: the auth token goes with every request (issue 19, point 10) -------

@pytest.mark.parametrize("value", [
    "http://api.twilio.com", "http://example.com:8080", "http://10.0.0.5:4010",
    "http://127.0.0.1.nip.io", "http://localhost.example.com", "http://[::2]:4010"])
def test_twilio_api_base_url_over_plain_http_must_be_loopback(value: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env(TWILIO_API_BASE_URL=value))
    assert str(err.value) == (
        "TWILIO_API_BASE_URL must be an https URL (plain http only for a local double on "
        "127.0.0.1, ::1 or localhost): every request carries the auth token; "
        f"got {value!r}.")


@pytest.mark.parametrize("value", [
    "https://api.twilio.com", "https://twilio-proxy.example.com:8443",
    "http://127.0.0.1:4010", "http://[::1]:4010", "http://localhost:4010",
    "http://LOCALHOST:4010/"])
def test_twilio_api_base_url_takes_https_and_loopback_http(value: str) -> None:
    assert Settings.from_env(env(TWILIO_API_BASE_URL=value)).api_base_url == value.rstrip("/")
