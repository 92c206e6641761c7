"""The credential cache: one read per TTL, one more on a rejected token; vault errors named."""

import asyncio
import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from shared.credentials import (
    CredentialCache,
    CredentialsError,
    KeyVaultSource,
    TwilioCredentials,
    source_for,
)
from tests.helpers import AUTH_TOKEN, settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


SID = "AC" + "a" * 32  # test values
OLD, NEW = "0ld" + "a" * 29, "n3w" + "b" * 29
DAY = 86400.0


class FakeSecretClient:
    """The three SecretClient calls the source makes, over versioned values:
    `versions[name]` is a list of (value, created epoch, enabled), oldest first."""

    def __init__(self, values: dict[str, str], error: Exception | None = None) -> None:
        self.versions = {name: [(value, 1000.0, True)] for name, value in values.items()}
        self.error, self.gets, self.lists = error, 0, 0
        self.list_error: Exception | None = None  # a vault that grants get but not list

    def set(self, name: str, value: str, created: float, enabled: bool = True) -> None:
        self.versions.setdefault(name, []).append((value, created, enabled))

    def _props(self, name: str, i: int) -> Any:
        _, created, enabled = self.versions[name][i]
        return SimpleNamespace(version=f"v{i}", enabled=enabled,
                               created_on=dt.datetime.fromtimestamp(created, dt.UTC))

    def get_secret(self, name: str, version: str | None = None) -> Any:
        self.gets += 1
        if self.error:
            raise self.error
        history = self.versions[name]
        i = len(history) - 1 if version is None else int(version[1:])
        return SimpleNamespace(value=history[i][0], properties=self._props(name, i))

    def list_properties_of_secret_versions(self, name: str) -> Any:
        self.lists += 1
        if self.list_error:
            raise self.list_error
        return [self._props(name, i) for i in range(len(self.versions[name]))]


def vault(client: FakeSecretClient, now: float = 1000.0) -> KeyVaultSource:
    return KeyVaultSource("https://kv.vault.azure.net", "twilio-account-sid",
                          "twilio-auth-token", lambda: client, clock=lambda: now)


def test_vault_values_cached_until_ttl() -> None:
    client = FakeSecretClient({"twilio-account-sid": SID, "twilio-auth-token": OLD})
    clock = Clock()
    cache = CredentialCache(vault(client, now=1000 + 2 * DAY), ttl_seconds=60, clock=clock)

    async def go() -> list[TwilioCredentials]:
        first = await asyncio.gather(*(cache.get() for _ in range(10)))
        clock.now = 59
        second = await cache.get()
        clock.now = 61
        return [*first, second, await cache.get()]

    values = asyncio.run(go())
    assert values[0] == TwilioCredentials(SID, OLD)
    assert client.gets == 4  # two secrets, read twice: at start and after the TTL
    assert client.lists == 0  # the token is old: no rotation under way


def test_refresh_after_rejection_is_rate_limited() -> None:
    client = FakeSecretClient({"twilio-account-sid": SID, "twilio-auth-token": OLD})
    clock = Clock()
    cache = CredentialCache(vault(client, now=1000 + 2 * DAY), ttl_seconds=900,
                            min_refresh_seconds=10, clock=clock)

    async def go() -> tuple[Any, Any, Any]:
        old = await cache.get()
        client.set("twilio-auth-token", NEW, created=1000 + DAY)
        too_soon = await cache.refresh(old)
        clock.now = 11
        fresh = await cache.refresh(old)
        return old, too_soon, fresh

    old, too_soon, fresh = asyncio.run(go())
    assert too_soon is None
    assert fresh == TwilioCredentials(SID, NEW)  # a day old: the window has closed
    assert client.gets == 4


def test_failed_refreshes_are_rate_limited_too() -> None:
    """While the vault fails, forged requests cannot drive vault traffic: one try per
    10 s, however many signatures fail."""
    client = FakeSecretClient({"twilio-account-sid": SID, "twilio-auth-token": OLD})
    clock = Clock()
    cache = CredentialCache(vault(client), min_refresh_seconds=10, clock=clock)

    async def go() -> list[str]:
        creds = await cache.get()
        client.error = ServiceRequestError("down")
        clock.now = 11
        outcomes = []
        for _ in range(20):
            try:
                outcomes.append(repr(await cache.refresh(creds)))
            except CredentialsError:
                outcomes.append("error")
        return outcomes

    outcomes = asyncio.run(go())
    assert outcomes == ["error"] + ["None"] * 19
    assert client.gets == 2 + 1  # the first read, then one failed try


def test_transient_vault_failure_after_the_ttl_keeps_the_held_credentials(caplog: Any
                                                                         ) -> None:
    client = FakeSecretClient({"twilio-account-sid": SID, "twilio-auth-token": OLD})
    clock = Clock()
    cache = CredentialCache(vault(client), ttl_seconds=60, min_refresh_seconds=10,
                            clock=clock)

    async def go() -> list[TwilioCredentials]:
        first = await cache.get()
        client.error = ServiceRequestError("down")
        clock.now = 61
        during = [await cache.get() for _ in range(5)]
        client.error = None
        clock.now = 72
        return [first, *during, await cache.get()]

    values = asyncio.run(go())
    assert all(v == TwilioCredentials(SID, OLD) for v in values)
    assert client.gets == 2 + 1 + 2  # first read, one failed try, the read after
    assert OLD not in caplog.text


def test_rotation_accepts_the_previous_token_for_the_window() -> None:
    client = FakeSecretClient({"twilio-account-sid": SID, "twilio-auth-token": OLD})
    client.set("twilio-auth-token", NEW, created=5000.0)
    within = vault(client, now=5000.0 + DAY - 1).fetch()
    after = vault(client, now=5000.0 + DAY).fetch()
    assert (within.auth_token, within.previous_auth_token) == (NEW, OLD)
    assert within.webhook_tokens == (NEW, OLD)
    assert (after.auth_token, after.webhook_tokens) == (NEW, (NEW,))
    # Disabling the old version in the vault ends the window at once.
    client.versions["twilio-auth-token"][0] = (OLD, 1000.0, False)
    assert vault(client, now=5001.0).fetch().webhook_tokens == (NEW,)
    assert OLD not in repr(within) and NEW not in repr(within)


def forbidden() -> HttpResponseError:
    return HttpResponseError(response=type("R", (), {"status_code": 403, "reason": "Forbidden",
                                                      "headers": {}, "text": lambda s: ""})())


@pytest.mark.parametrize("error, what", [
    (forbidden(), "HTTP 403"), (ServiceRequestError("reset"), "ServiceRequestError"),
    (RuntimeError("an SDK surprise"), "RuntimeError")])
def test_a_vault_that_cannot_list_versions_leaves_the_current_token_serving(
        error: Exception, what: str, caplog: Any) -> None:
    """Issue 19, point 9: the previous-token look-up is best effort."""
    client = FakeSecretClient({"twilio-account-sid": SID, "twilio-auth-token": OLD})
    client.set("twilio-auth-token", NEW, created=5000.0)
    client.list_error = error
    source = vault(client, now=5000.0 + 60)
    fetched = [source.fetch() for _ in range(3)]
    assert fetched == [TwilioCredentials(SID, NEW)] * 3
    assert client.lists == 3  # tried on every read: granting `list` later takes effect
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [(
        "WARNING", "Key Vault https://kv.vault.azure.net did not list the versions of secret "
        f"'twilio-auth-token' ({what}): the auth token's previous version is not accepted on "
        "webhooks during the rotation window; the current one serves. Grant the app's "
        "identity 'list' on secrets: the 'Key Vault Secrets User' role (RBAC vault) or "
        "'list' beside 'get' in the access policy.")]
    assert OLD not in caplog.text and NEW not in caplog.text


@pytest.mark.parametrize("sid, token, fragment", [
    (SID, "   ", "auth token from secrets 'twilio-account-sid' and 'twilio-auth-token' in "
                 "https://kv.vault.azure.net is empty"),
    (SID, "\t\n", "is empty"),
    (SID, "short-token", "is not 32 letters and digits"),
    ("  ", OLD, "Account SID from secrets"),
    ("AC123", OLD, "is not AC followed by 32 hex digits"),
])
def test_blank_or_malformed_secrets_fail_closed(sid: str, token: str, fragment: str) -> None:
    client = FakeSecretClient({"twilio-account-sid": sid, "twilio-auth-token": token})
    with pytest.raises(CredentialsError) as err:
        vault(client).fetch()
    assert fragment in str(err.value)
    assert err.value.transient is False
    assert "short-token" not in str(err.value) and "AC123" not in str(err.value)


@pytest.mark.parametrize("error, transient, fragment", [
    (ResourceNotFoundError("nope"), False, "Secret 'twilio-account-sid' was not found"),
    (ClientAuthenticationError("denied"), True, "Could not authenticate"),
    (HttpResponseError(response=type("R", (), {"status_code": 429, "reason": "x",
                                                "headers": {}, "text": lambda s: ""})()),
     True, "HTTP 429 reading 'twilio-account-sid' (throttled)"),
    (ServiceRequestError("connection refused"), True, "is unreachable"),
])
def test_vault_errors_are_named_and_classified(error: Exception, transient: bool,
                                               fragment: str) -> None:
    source = vault(FakeSecretClient({}, error))
    with pytest.raises(CredentialsError) as err:
        source.fetch()
    assert err.value.transient is transient
    assert fragment in str(err.value)


def test_environment_fallback_warns_once(caplog: Any) -> None:
    source = source_for(settings())
    assert source.fetch() == TwilioCredentials(source.fetch().account_sid, AUTH_TOKEN)
    warnings = [r for r in caplog.records if "KEY_VAULT_URL is not set" in r.getMessage()]
    assert len(warnings) == 1
    assert AUTH_TOKEN not in caplog.text
