"""The credential cache: one read per TTL, one more on a rejected token; vault errors named."""

import asyncio
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


class FakeSecretClient:
    def __init__(self, values: dict[str, str], error: Exception | None = None) -> None:
        self.values, self.error, self.gets = values, error, 0

    def get_secret(self, name: str) -> Any:
        self.gets += 1
        if self.error:
            raise self.error

        class Secret:
            value = self.values[name]
        return Secret()


def vault(client: FakeSecretClient) -> KeyVaultSource:
    return KeyVaultSource("https://kv.vault.azure.net", "twilio-account-sid",
                          "twilio-auth-token", lambda: client)


def test_vault_values_cached_until_ttl() -> None:
    client = FakeSecretClient({"twilio-account-sid": "ACx", "twilio-auth-token": "tok"})
    clock = Clock()
    cache = CredentialCache(vault(client), ttl_seconds=60, clock=clock)

    async def go() -> list[TwilioCredentials]:
        first = await asyncio.gather(*(cache.get() for _ in range(10)))
        clock.now = 59
        second = await cache.get()
        clock.now = 61
        return [*first, second, await cache.get()]

    values = asyncio.run(go())
    assert values[0] == TwilioCredentials("ACx", "tok")
    assert client.gets == 4  # two secrets, read twice: at start and after the TTL


def test_refresh_after_rejection_is_rate_limited() -> None:
    client = FakeSecretClient({"twilio-account-sid": "ACx", "twilio-auth-token": "old"})
    clock = Clock()
    cache = CredentialCache(vault(client), ttl_seconds=900, min_refresh_seconds=10, clock=clock)

    async def go() -> tuple[Any, Any, Any]:
        old = await cache.get()
        client.values["twilio-auth-token"] = "new"
        too_soon = await cache.refresh(old)
        clock.now = 11
        fresh = await cache.refresh(old)
        return old, too_soon, fresh

    old, too_soon, fresh = asyncio.run(go())
    assert too_soon is None
    assert fresh == TwilioCredentials("ACx", "new")
    assert client.gets == 4


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
