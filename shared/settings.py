"""The app's settings: one typed object read from app settings (or the environment locally).

The setting names are a contract shared with `infra/` and docs/settings.md; `SETTING_NAMES` lists
every name the app reads, and a test keeps the Bicep in step with it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shared.callflow import CallFlow, CallFlowError
from shared.numbers import E164

# Key Vault secret names: 1-127 of letters, digits and dashes.
_SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
# Storage queue names: 3-63 of lowercase letters, digits and single dashes; we append
# "-rejected" (9 characters) and "-poison" for the dead-letter queues, so 54 at most.
_QUEUE_NAME = re.compile(r"^(?=.{3,54}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$")
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}\Z")
_KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("

DEFAULT_GREETING = "Hello. Thanks for calling. Goodbye."
DEFAULT_SMS_REPLY = "Thanks for your message. We will get back to you soon."

STORAGE_PREFIX = "AzureWebJobsStorage"

# Every setting the app reads. `REQUIRED_IN_AZURE` are the ones a deployment must set.
SETTING_NAMES = frozenset(
    {
        "KEY_VAULT_URL",
        "TWILIO_ACCOUNT_SID_SECRET_NAME",
        "TWILIO_AUTH_TOKEN_SECRET_NAME",
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "TWILIO_FROM_NUMBER",
        "TWILIO_MESSAGING_SERVICE_SID",
        "TWILIO_API_BASE_URL",
        "TWILIO_SECRETS_TTL_SECONDS",
        "TWILIO_TOKEN_ROTATION_WINDOW_SECONDS",
        "TWILIO_MAX_CONCURRENCY",
        "THROTTLE_DEADLINE_SECONDS",
        "JOB_RETENTION_DAYS",
        "WEBHOOK_EFFECT_RETENTION_HOURS",
        "WEBHOOK_BUDGET_SECONDS",
        "WEBHOOK_BASE_URL",
        "OUTBOUND_QUEUE_NAME",
        "JOBS_TABLE_NAME",
        "VOICE_GREETING",
        "SMS_AUTO_REPLY",
        "SMS_KEYWORDS",
        "CALL_FLOW",
        "INBOUND_QUEUE_NAME",
        "STATUS_QUEUE_NAME",
        "AZURE_CLIENT_ID",
        STORAGE_PREFIX,
        f"{STORAGE_PREFIX}__accountName",
        f"{STORAGE_PREFIX}__blobServiceUri",
        f"{STORAGE_PREFIX}__queueServiceUri",
        f"{STORAGE_PREFIX}__tableServiceUri",
        f"{STORAGE_PREFIX}__credential",
        f"{STORAGE_PREFIX}__clientId",
    }
)
REQUIRED_IN_AZURE = frozenset(
    {
        "KEY_VAULT_URL",
        "AZURE_CLIENT_ID",
        "WEBHOOK_BASE_URL",
        "OUTBOUND_QUEUE_NAME",
        f"{STORAGE_PREFIX}__queueServiceUri",
        f"{STORAGE_PREFIX}__tableServiceUri",
        f"{STORAGE_PREFIX}__credential",
        f"{STORAGE_PREFIX}__clientId",
    }
)


# Settings the Functions platform reads (not the app); infra/ sets them beside the app's.
PLATFORM_SETTINGS = frozenset(
    {"APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"}
)


class SettingsError(ValueError):
    """A setting is missing or malformed. The message names the setting and the fix."""


@dataclass(frozen=True)
class StorageSettings:
    """How to reach the storage account: a connection string, or service URIs + identity."""

    connection_string: str | None = field(default=None, repr=False)
    queue_service_uri: str | None = None
    table_service_uri: str | None = None
    client_id: str | None = None

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None


@dataclass(frozen=True)
class Settings:
    key_vault_url: str | None
    account_sid_secret_name: str = "twilio-account-sid"
    auth_token_secret_name: str = "twilio-auth-token"
    # Local fallback only; never shown by repr.
    account_sid: str | None = field(default=None, repr=False)
    auth_token: str | None = field(default=None, repr=False)
    from_number: str | None = None
    # Default Messaging Service for sms jobs; wins over `from_number` when set.
    messaging_service_sid: str | None = None
    api_base_url: str = "https://api.twilio.com"
    secrets_ttl_seconds: float = 900.0
    token_rotation_window_seconds: float = 86400.0
    # Per instance: the most Twilio REST requests in flight at once (an adaptive window
    # stays at or below it, shared.limiter). Instances x this stays below the account's
    # concurrency limit (commonly 100) in the default deployment.
    twilio_max_concurrency: int = 8
    # A job Twilio keeps throttling (429) is dead-lettered as `throttled` after this long.
    throttle_deadline_seconds: float = 3600.0
    # Final job rows and webhook-effect rows are deleted this long after their last write.
    job_retention_days: float = 30.0
    webhook_effect_retention_hours: float = 48.0
    # Twilio waits 15 s for a webhook's answer, connection included, then retries once or
    # goes to the fallback URL: answer (a 503 if need be) well inside that.
    webhook_budget_seconds: float = 8.0
    webhook_base_url: str | None = None
    outbound_queue_name: str = "twilio-outbound"
    jobs_table_name: str = "twiliojobs"
    voice_greeting: str = DEFAULT_GREETING
    sms_auto_reply: str | None = DEFAULT_SMS_REPLY
    sms_keywords: Mapping[str, str] = field(default_factory=dict)  # KEYWORD -> reply
    call_flow: CallFlow | None = None
    inbound_queue_name: str = "twilio-inbound"
    status_queue_name: str = "twilio-status"
    azure_client_id: str | None = None
    storage: StorageSettings = field(default_factory=StorageSettings)

    @property
    def rejected_queue_name(self) -> str:
        return f"{self.outbound_queue_name}-rejected"

    @property
    def poison_queue_name(self) -> str:
        return f"{self.outbound_queue_name}-poison"

    @property
    def uses_key_vault(self) -> bool:
        return self.key_vault_url is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        read = _Reader(env)
        key_vault_url = read.url("KEY_VAULT_URL", schemes=("https",), origin_only=True)
        settings = cls(
            key_vault_url=key_vault_url,
            account_sid_secret_name=read.matching(
                "TWILIO_ACCOUNT_SID_SECRET_NAME", _SECRET_NAME,
                "a Key Vault secret name (letters, digits and dashes)") or "twilio-account-sid",
            auth_token_secret_name=read.matching(
                "TWILIO_AUTH_TOKEN_SECRET_NAME", _SECRET_NAME,
                "a Key Vault secret name (letters, digits and dashes)") or "twilio-auth-token",
            # Read even with a vault so an unresolved reference still fails loudly.
            account_sid=read.text("TWILIO_ACCOUNT_SID"),
            auth_token=read.text("TWILIO_AUTH_TOKEN", secret=True),
            from_number=read.matching(
                "TWILIO_FROM_NUMBER", E164, "an E.164 number such as +15551234567"),
            messaging_service_sid=read.matching(
                "TWILIO_MESSAGING_SERVICE_SID", _MESSAGING_SERVICE_SID,
                "a Messaging Service SID: MG followed by 32 hex digits"),
            api_base_url=_api_base_url(read),
            secrets_ttl_seconds=read.number("TWILIO_SECRETS_TTL_SECONDS", 900.0, minimum=5),
            token_rotation_window_seconds=read.number(
                "TWILIO_TOKEN_ROTATION_WINDOW_SECONDS", 86400.0, minimum=0),
            webhook_budget_seconds=read.number("WEBHOOK_BUDGET_SECONDS", 8.0, minimum=1,
                                               maximum=14),
            twilio_max_concurrency=int(read.number("TWILIO_MAX_CONCURRENCY", 8, minimum=1,
                                                   maximum=1000, integer=True)),
            throttle_deadline_seconds=read.number("THROTTLE_DEADLINE_SECONDS", 3600.0,
                                                  minimum=60),
            job_retention_days=read.number("JOB_RETENTION_DAYS", 30.0, minimum=1, unit="days"),
            # Twilio retries a webhook within seconds; its status callbacks come within hours.
            webhook_effect_retention_hours=read.number("WEBHOOK_EFFECT_RETENTION_HOURS", 48.0,
                                                       minimum=1, unit="hours"),
            webhook_base_url=read.url("WEBHOOK_BASE_URL", schemes=("https", "http"),
                                      origin_only=True),
            outbound_queue_name=read.queue_name("OUTBOUND_QUEUE_NAME", "twilio-outbound"),
            jobs_table_name=read.matching(
                "JOBS_TABLE_NAME", _TABLE_NAME,
                "a storage table name: a letter, then 2-62 letters or digits") or "twiliojobs",
            voice_greeting=read.text("VOICE_GREETING") or DEFAULT_GREETING,
            sms_auto_reply=_auto_reply(read.text("SMS_AUTO_REPLY", keep_empty=True)),
            sms_keywords=_keywords(read.text("SMS_KEYWORDS")),
            call_flow=_call_flow(read.text("CALL_FLOW")),
            inbound_queue_name=read.queue_name("INBOUND_QUEUE_NAME", "twilio-inbound"),
            status_queue_name=read.queue_name("STATUS_QUEUE_NAME", "twilio-status"),
            azure_client_id=read.text("AZURE_CLIENT_ID"),
            storage=_storage(read),
        )
        if settings.key_vault_url is None and settings.auth_token is None:
            # Without credentials nothing can be signed-checked or sent: say what to set.
            raise SettingsError(
                "No Twilio credentials configured: set KEY_VAULT_URL (secrets "
                f"'{settings.account_sid_secret_name}' and '{settings.auth_token_secret_name}') "
                "or, for local development only, TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN."
            )
        if settings.key_vault_url is None and settings.account_sid is None:
            raise SettingsError("TWILIO_AUTH_TOKEN is set but TWILIO_ACCOUNT_SID is not: set both.")
        return settings


# Hosts that are this machine: the only ones TWILIO_API_BASE_URL may reach over plain http.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def _api_base_url(read: _Reader) -> str:
    """TWILIO_API_BASE_URL: every request carries the auth token as Basic auth, so it goes
    over https, or over http only to a local double on this machine."""
    name = "TWILIO_API_BASE_URL"
    url = read.url(name, schemes=("https", "http"), origin_only=True)
    if url is None:
        return "https://api.twilio.com"
    parts = urlsplit(url)
    if parts.scheme == "http" and (parts.hostname or "") not in LOOPBACK_HOSTS:
        raise SettingsError(
            f"{name} must be an https URL (plain http only for a local double on 127.0.0.1, "
            f"::1 or localhost): every request carries the auth token; got {url!r}.")
    return url


def _auto_reply(value: str | None) -> str | None:
    if value is None:
        return DEFAULT_SMS_REPLY
    return value or None  # empty: no reply


def _keywords(text: str | None) -> dict[str, str]:
    """SMS_KEYWORDS: a JSON object mapping a first word to its reply."""
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"SMS_KEYWORDS is not JSON ({exc.msg}); expected an object such "
                            'as {"HOURS": "We are open 9 to 5."}.') from None
    if not isinstance(doc, dict) or not all(
            isinstance(k, str) and k.strip() and isinstance(v, str) and v
            for k, v in doc.items()):
        raise SettingsError('SMS_KEYWORDS must map words to non-empty replies, e.g. '
                            '{"HOURS": "We are open 9 to 5."}.')
    return {k.strip().upper(): v for k, v in doc.items()}


def _call_flow(text: str | None) -> CallFlow | None:
    if not text:
        return None
    try:
        return CallFlow.parse(text)
    except CallFlowError as exc:
        raise SettingsError(str(exc)) from None


def _storage(read: _Reader) -> StorageSettings:
    conn = read.text(STORAGE_PREFIX, secret=True)
    if conn:
        return StorageSettings(connection_string=conn)
    queue_uri = read.url(f"{STORAGE_PREFIX}__queueServiceUri", schemes=("https", "http"))
    table_uri = read.url(f"{STORAGE_PREFIX}__tableServiceUri", schemes=("https", "http"))
    account = read.text(f"{STORAGE_PREFIX}__accountName")
    if account and not queue_uri:
        queue_uri = f"https://{account}.queue.core.windows.net"
    if account and not table_uri:
        table_uri = f"https://{account}.table.core.windows.net"
    if queue_uri and not table_uri:
        table_uri = queue_uri.replace(".queue.", ".table.")
    if not queue_uri:
        raise SettingsError(
            f"{STORAGE_PREFIX} is not set: set it to a connection string "
            "(UseDevelopmentStorage=true locally) or set "
            f"{STORAGE_PREFIX}__queueServiceUri and {STORAGE_PREFIX}__tableServiceUri "
            "with a managed identity."
        )
    return StorageSettings(
        queue_service_uri=queue_uri,
        table_service_uri=table_uri,
        client_id=read.text(f"{STORAGE_PREFIX}__clientId") or read.text("AZURE_CLIENT_ID"),
    )


class _Reader:
    """Reads one setting at a time and phrases every error the same way."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str, *, secret: bool = False, keep_empty: bool = False) -> str | None:
        value = self._env.get(name)
        if value is None:
            return None
        value = value.strip()
        if value.startswith(_KEY_VAULT_REFERENCE):
            # The platform leaves a reference it could not resolve as the literal string.
            raise SettingsError(
                f"{name} is an unresolved Key Vault reference: the Functions platform could "
                "not read the secret. Check that the app's identity has the 'Key Vault "
                "Secrets User' role on the vault and that the secret exists, or use "
                "KEY_VAULT_URL and let the app read the vault itself."
            )
        if not value and not keep_empty:
            return None
        return value

    def matching(self, name: str, pattern: re.Pattern[str], expected: str) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        if not pattern.match(value):
            raise SettingsError(f"{name} must be {expected}; got {value!r}.")
        return value

    def queue_name(self, name: str, default: str) -> str:
        return self.matching(name, _QUEUE_NAME, "a storage queue name: 3-54 lowercase letters, "
                             "digits and single dashes") or default

    def number(self, name: str, default: float, *, minimum: float,
               maximum: float = float("inf"), unit: str = "seconds",
               integer: bool = False) -> float:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = float(int(value)) if integer else float(value)
        except ValueError:
            what = "a whole number" if integer else f"a number of {unit}"
            raise SettingsError(f"{name} must be {what}; got {value!r}.") from None
        if not minimum <= number <= maximum:  # NaN fails too
            raise SettingsError(f"{name} must be from {minimum:g} to {maximum:g}; got "
                                f"{value!r}." if maximum < float("inf") else
                                f"{name} must be at least {minimum:g}; got {value!r}.")
        return number

    def url(self, name: str, *, schemes: tuple[str, ...], origin_only: bool = False) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.netloc:
            raise SettingsError(
                f"{name} must be an absolute {' or '.join(schemes)} URL; got {value!r}."
            )
        if origin_only and (parts.path not in ("", "/") or parts.query or parts.fragment):
            raise SettingsError(
                f"{name} must be an origin such as {parts.scheme}://{parts.netloc} "
                f"(no path or query); got {value!r}."
            )
        return value.rstrip("/")
