"""Twilio credentials: read from Key Vault (or the local environment), cached per process.

The vault is read on first use, then again only after the TTL, or when the caller reports
that Twilio refused the token (a rotated token), at most once per `min_refresh_seconds`.
Secret values never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared import redaction
from shared.settings import Settings

log = redaction.logger(__name__)  # phone numbers masked

# How long after a new token version is written the version before it stays accepted on
# webhooks (TWILIO_TOKEN_ROTATION_WINDOW_SECONDS): time to promote it in Twilio.
ROTATION_WINDOW_SECONDS = 86400.0


class CredentialsError(RuntimeError):
    """The credentials could not be read. `transient` says whether retrying may help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


# Twilio's Account SID and auth token: anything else is a wrong or damaged secret, and an
# empty or blank token would make every signature an HMAC with an empty key.
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_AUTH_TOKEN = re.compile(r"[0-9A-Za-z]{32}")


@dataclass(frozen=True)
class TwilioCredentials:
    account_sid: str
    auth_token: str = field(repr=False)
    # The token before the last rotation, accepted on webhooks for a bounded window (Twilio
    # signs with its primary token until the new one is promoted).
    previous_auth_token: str | None = field(default=None, repr=False)

    @property
    def webhook_tokens(self) -> tuple[str, ...]:
        return (self.auth_token,) + ((self.previous_auth_token,)
                                     if self.previous_auth_token else ())


def checked(account_sid: str | None, auth_token: str | None, where: str,
            previous_auth_token: str | None = None) -> TwilioCredentials:
    """Credentials from `where`, or a `CredentialsError` that names what is wrong (never the
    values)."""
    sid, token = (account_sid or "").strip(), (auth_token or "").strip()
    if not _ACCOUNT_SID.fullmatch(sid):
        raise CredentialsError(f"The Twilio Account SID from {where} is "
                               f"{'empty' if not sid else 'not AC followed by 32 hex digits'}.",
                               transient=False)
    if not _AUTH_TOKEN.fullmatch(token):
        raise CredentialsError(f"The Twilio auth token from {where} is "
                               f"{'empty' if not token else 'not 32 letters and digits'}.",
                               transient=False)
    previous = (previous_auth_token or "").strip() or None
    if previous is not None and not _AUTH_TOKEN.fullmatch(previous):
        previous = None  # an old version that was never a token: ignore it
    return TwilioCredentials(sid, token, previous)


class CredentialSource(Protocol):
    """Where credentials come from. `fetch` blocks; callers run it off the event loop."""

    description: str

    def fetch(self) -> TwilioCredentials: ...


class EnvironmentSource:
    description = "environment (TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN)"

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self._credentials = checked(account_sid, auth_token, "TWILIO_ACCOUNT_SID / "
                                    "TWILIO_AUTH_TOKEN")

    def fetch(self) -> TwilioCredentials:
        return self._credentials


class KeyVaultSource:
    """Reads the two secrets with a `SecretClient` (built lazily: the SDK is slow to import).

    Token rotation: when the token secret's current version is younger than
    `rotation_window_seconds`, the newest earlier enabled version is read too, and webhooks
    signed with either token are accepted (docs/deploy.md: rotate the auth token). Disabling the old
    version in the vault ends the window at once.
    """

    def __init__(self, vault_url: str, sid_name: str, token_name: str,
                 client_factory: Callable[[], Any] | None = None,
                 client_id: str | None = None, *,
                 rotation_window_seconds: float = ROTATION_WINDOW_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.vault_url = vault_url
        self._names = (sid_name, token_name)
        self._client_factory = client_factory or (lambda: _default_secret_client(vault_url,
                                                                                 client_id))
        self._client: Any = None
        self._window = rotation_window_seconds
        self._clock = clock
        self.description = f"Key Vault {vault_url}"
        self.reads = 0  # secret GETs made, for tests and benchmarks
        self._previous_warned = False

    def fetch(self) -> TwilioCredentials:
        if self._client is None:
            self._client = self._client_factory()
        sid_name, token_name = self._names
        sid = self._read(sid_name)
        token = self._read(token_name)
        return checked(sid.value, token.value, f"secrets '{sid_name}' and '{token_name}' in "
                       f"{self.vault_url}", self._previous(token))

    def _previous(self, current: Any) -> str | None:
        """The token's earlier version while the current one is new, else None. Best
        effort: a vault that refuses to list versions (an access policy granting `get`
        only) or fails here leaves the current token serving, with one warning."""
        props = getattr(current, "properties", None)
        created = getattr(props, "created_on", None)
        if props is None or not self._window or created is None or \
                self._clock() - created.timestamp() >= self._window:
            return None
        name = self._names[1]
        try:
            older = [v for v in self._client.list_properties_of_secret_versions(name)
                     if v.enabled and v.version != props.version
                     and v.created_on is not None and v.created_on < created]
            if not older:
                return None
            newest = max(older, key=lambda v: v.created_on or dt.datetime.min)
            value = self._read(name, newest.version).value
        except Exception as exc:  # noqa: BLE001 - any failure: the current token serves
            self._previous_failed(name, exc)
            return None
        return str(value) if value else None

    def _previous_failed(self, name: str, exc: Exception) -> None:
        if self._previous_warned:
            return  # once per process: the listing is tried again on every read
        self._previous_warned = True
        status = getattr(exc, "status_code", None)
        what = (f"HTTP {status}" if status else
                exc.args[0] if isinstance(exc, CredentialsError) else type(exc).__name__)
        log.warning(
            "Key Vault %s did not list the versions of secret '%s' (%s): the auth token's "
            "previous version is not accepted on webhooks during the rotation window; the "
            "current one serves. Grant the app's identity 'list' on secrets: the 'Key Vault "
            "Secrets User' role (RBAC vault) or 'list' beside 'get' in the access policy.",
            self.vault_url, name, what)

    def _read(self, name: str, version: str | None = None) -> Any:
        self.reads += 1
        if version is None:
            return self._guard(name, lambda: self._client.get_secret(name))
        return self._guard(name, lambda: self._client.get_secret(name, version))

    def _guard(self, name: str, call: Callable[[], Any]) -> Any:
        """`call()`, with the SDK's errors turned into `CredentialsError`s that say what to do."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
        )

        try:
            return call()
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
                              settings.azure_client_id,
                              rotation_window_seconds=settings.token_rotation_window_seconds)
    log.warning("KEY_VAULT_URL is not set: using TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN from "
                "the environment. Use this for local development only.")
    assert settings.account_sid and settings.auth_token  # Settings.from_env guarantees it
    return EnvironmentSource(settings.account_sid, settings.auth_token)


class CredentialCache:
    """Process-wide cache in front of a `CredentialSource`.

    Reads happen on first use, after the TTL, and on `refresh` (Twilio refused the token, or
    a signature matched none of ours) at most once per `min_refresh_seconds` whether the
    read succeeded or not, so forged requests cannot drive vault traffic. While the vault
    is briefly unreachable, the credentials already held keep serving.
    """

    def __init__(self, source: CredentialSource, *, ttl_seconds: float = 900.0,
                 min_refresh_seconds: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self._ttl = ttl_seconds
        self._min_refresh = min_refresh_seconds
        self._clock = clock
        self._value: TwilioCredentials | None = None
        self._fetched_at = 0.0
        self._attempted_at = -float("inf")
        self._lock: asyncio.Lock | None = None

    async def get(self) -> TwilioCredentials:
        value = self._value
        if value is not None and self._clock() - self._fetched_at < self._ttl:
            return value
        return await self._load(stale=value)

    async def refresh(self, rejected: TwilioCredentials) -> TwilioCredentials | None:
        """Twilio refused `rejected`: read again, unless a read was tried moments ago.

        Returns new credentials, or None when they are the same as the rejected ones.
        Raises `CredentialsError` when the read fails.
        """
        if self._value is rejected and self._clock() - self._attempted_at >= self._min_refresh:
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
            if stale is not None and not force and \
                    self._clock() - self._attempted_at < self._min_refresh:
                return stale  # a read failed moments ago: don't hammer the vault
            self._attempted_at = self._clock()
            try:
                value = await asyncio.to_thread(self.source.fetch)
            except CredentialsError as exc:
                if stale is None or force or not exc.transient:
                    raise
                log.warning("%s; using the credentials read earlier until it answers", exc)
                return stale
            self._value, self._fetched_at = value, self._clock()
            return value
