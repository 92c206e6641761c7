"""Twilio credentials: read from Key Vault (or the local environment), cached per process.

The vault is read on first use, then again only after the TTL, or when the caller reports
that Twilio refused the token (a rotated token), at most once per `min_refresh_seconds`.
Secret values never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TwilioCredentials:
    account_sid: str
    auth_token: str = field(repr=False)


class CredentialsError(RuntimeError):
    """The credentials could not be read. `transient` says whether retrying may help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class CredentialSource(Protocol):
    """Where credentials come from. `fetch` blocks; callers run it off the event loop."""

    description: str

    def fetch(self) -> TwilioCredentials: ...


class EnvironmentSource:
    description = "environment (TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN)"

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self._credentials = TwilioCredentials(account_sid, auth_token)

    def fetch(self) -> TwilioCredentials:
        return self._credentials


class KeyVaultSource:
    """Reads the two secrets with a `SecretClient` (built lazily: the SDK is slow to import)."""

    def __init__(self, vault_url: str, sid_name: str, token_name: str,
                 client_factory: Callable[[], Any] | None = None,
                 client_id: str | None = None) -> None:
        self.vault_url = vault_url
        self._names = (sid_name, token_name)
        self._client_factory = client_factory or (lambda: _default_secret_client(vault_url,
                                                                                 client_id))
        self._client: Any = None
        self.description = f"Key Vault {vault_url}"
        self.reads = 0  # secret GETs made, for tests and benchmarks

    def fetch(self) -> TwilioCredentials:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
        )

        if self._client is None:
            self._client = self._client_factory()
        values = []
        for name in self._names:
            try:
                self.reads += 1
                secret = self._client.get_secret(name)
            except ResourceNotFoundError:
                raise CredentialsError(
                    f"Secret '{name}' was not found in {self.vault_url}. Set it with "
                    f"`az keyvault secret set --vault-name <vault> --name {name} --value ...`.",
                    transient=False) from None
            except ClientAuthenticationError as exc:
                raise CredentialsError(
                    f"Could not authenticate to {self.vault_url} to read '{name}' "
                    f"({type(exc).__name__}). In Azure check AZURE_CLIENT_ID and the identity's "
                    "'Key Vault Secrets User' role; locally run `az login`.",
                    transient=True) from None
            except HttpResponseError as exc:
                status = exc.status_code
                raise CredentialsError(
                    f"Key Vault {self.vault_url} answered HTTP {status} reading '{name}'"
                    + (" (throttled)" if status == 429 else "") + ".",
                    transient=status is None or status == 429 or status >= 500) from None
            except ServiceRequestError as exc:
                raise CredentialsError(
                    f"Key Vault {self.vault_url} is unreachable ({type(exc).__name__}).",
                    transient=True) from None
            if not secret.value:
                raise CredentialsError(f"Secret '{name}' in {self.vault_url} is empty.",
                                       transient=False)
            values.append(secret.value.strip())
        return TwilioCredentials(values[0], values[1])


def _default_secret_client(vault_url: str, client_id: str | None) -> Any:
    from azure.identity import DefaultAzureCredential
    from azure.keyvault.secrets import SecretClient

    # A user-assigned identity is picked by client id (AZURE_CLIENT_ID); locally the
    # developer's own `az login` is used.
    credential = DefaultAzureCredential(managed_identity_client_id=client_id)
    return SecretClient(vault_url=vault_url, credential=credential)


def source_for(settings: Settings, client_factory: Callable[[], Any] | None = None
               ) -> CredentialSource:
    if settings.key_vault_url:
        return KeyVaultSource(settings.key_vault_url, settings.account_sid_secret_name,
                              settings.auth_token_secret_name, client_factory,
                              settings.azure_client_id)
    log.warning("KEY_VAULT_URL is not set: using TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN from "
                "the environment. Use this for local development only.")
    assert settings.account_sid and settings.auth_token  # Settings.from_env guarantees it
    return EnvironmentSource(settings.account_sid, settings.auth_token)


class CredentialCache:
    """Process-wide cache in front of a `CredentialSource`."""

    def __init__(self, source: CredentialSource, *, ttl_seconds: float = 900.0,
                 min_refresh_seconds: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self._ttl = ttl_seconds
        self._min_refresh = min_refresh_seconds
        self._clock = clock
        self._value: TwilioCredentials | None = None
        self._fetched_at = 0.0
        self._lock: asyncio.Lock | None = None

    async def get(self) -> TwilioCredentials:
        value = self._value
        if value is not None and self._clock() - self._fetched_at < self._ttl:
            return value
        return await self._load(stale=value)

    async def refresh(self, rejected: TwilioCredentials) -> TwilioCredentials | None:
        """Twilio refused `rejected`: read again, unless that was done moments ago.

        Returns new credentials, or None when they are the same as the rejected ones.
        """
        if self._value is rejected and self._clock() - self._fetched_at >= self._min_refresh:
            await self._load(stale=rejected, force=True)
        current = self._value
        if current is None or current == rejected:
            return None
        return current

    async def _load(self, *, stale: TwilioCredentials | None,
                    force: bool = False) -> TwilioCredentials:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            # Another task may have loaded while this one waited.
            if self._value is not stale and self._value is not None:
                return self._value
            if not force and self._value is not None and \
                    self._clock() - self._fetched_at < self._ttl:
                return self._value
            value = await asyncio.to_thread(self.source.fetch)
            self._value, self._fetched_at = value, self._clock()
            return value
