"""Twilio credentials from an HTTPS Key Vault double, through the real azure-identity chain
(DefaultAzureCredential -> managed identity endpoint), used by webhooks and the queue path."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from shared.outbound import QueueItem
from shared.runtime import Runtime
from shared.settings import Settings
from shared.webhooks import WebhookRequest
from tests.doubles import KeyVaultDouble, ManagedIdentityDouble, Tls, TwilioDouble
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN, env, form_body, sign
from tests.integration.conftest import secret_client_factory

SMS = {"type": "sms", "to": "+15551234567", "body": "hi"}


def vault_runtime(kv: KeyVaultDouble, tls: Tls, storage_env: dict[str, str],
                  twilio_url: str) -> Runtime:
    settings = Settings.from_env(env(KEY_VAULT_URL=kv.url, TWILIO_ACCOUNT_SID=None,
                                     TWILIO_AUTH_TOKEN=None, TWILIO_API_BASE_URL=twilio_url,
                                     **storage_env))
    return Runtime.build(settings, secret_client_factory=secret_client_factory(kv.url,
                                                                               tls.ca_path))


def signed_sms_webhook(token: str) -> WebhookRequest:
    form = {"MessageSid": "SM" + "2" * 32, "From": "+15551234567", "To": "+15005550006",
            "Body": "hi"}
    url = "http://127.0.0.1:7071/api/sms"
    return WebhookRequest("POST", url, {"content-type": "application/x-www-form-urlencoded",
                                        "x-twilio-signature": sign(url, form, token)},
                          form_body(form))


def test_vault_values_used_and_read_once_for_many_jobs(
        key_vault: KeyVaultDouble, managed_identity: ManagedIdentityDouble, tls: Tls,
        storage_env: dict[str, str], prism_recorder: TwilioDouble) -> None:
    rt = vault_runtime(key_vault, tls, storage_env, prism_recorder.url)

    async def go() -> list[Any]:
        try:
            hook = await rt.webhooks.handle("sms", signed_sms_webhook(AUTH_TOKEN))
            outcomes = await asyncio.gather(*(
                rt.processor.process(QueueItem(f"m{i}", json.dumps(SMS))) for i in range(20)))
            return [hook, *outcomes]
        finally:
            await rt.close()

    hook, *outcomes = asyncio.run(go())
    assert hook.status == 200
    assert [o.result for o in outcomes] == ["sent"] * 20
    creates = prism_recorder.creates("Messages")
    assert len(creates) == 20 and all(r.status == 201 for r in creates)
    assert all(f"/Accounts/{ACCOUNT_SID}/" in r.path for r in creates)  # the vault's SID
    assert key_vault.reads("twilio-account-sid") == 1
    assert key_vault.reads("twilio-auth-token") == 1
    assert len(managed_identity.requests) >= 1


ROTATED = "r0tated" + "c" * 25  # test value


def test_rotated_token_picked_up_without_restart(
        key_vault: KeyVaultDouble, tls: Tls, storage_env: dict[str, str],
        twilio_double: TwilioDouble) -> None:
    twilio_double.auth_token = AUTH_TOKEN
    rt = vault_runtime(key_vault, tls, storage_env, twilio_double.url)
    rt.credentials._min_refresh = 0  # rotate twice within a test

    async def go() -> list[Any]:
        try:
            first = await rt.processor.process(QueueItem("m1", json.dumps(SMS)))
            # The token is rotated in the vault and promoted at Twilio.
            key_vault.secrets["twilio-auth-token"] = ROTATED
            twilio_double.auth_token = ROTATED
            second = await rt.processor.process(QueueItem("m2", json.dumps(SMS)))
            hook = await rt.webhooks.handle("sms", signed_sms_webhook(ROTATED))
            # Within the rotation window, webhooks Twilio still signs with the old primary
            # token (before the new one is promoted) are accepted too.
            old = await rt.webhooks.handle("sms", signed_sms_webhook(AUTH_TOKEN))
            return [first, second, hook, old]
        finally:
            await rt.close()

    first, second, hook, old = asyncio.run(go())
    assert (first.result, second.result, hook.status, old.status) == ("sent", "sent", 200,
                                                                      200)
    statuses = [r.status for r in twilio_double.creates()]
    assert statuses == [201, 401, 201]
    assert key_vault.reads("twilio-auth-token") == 2


def test_a_vault_that_refuses_to_list_versions_keeps_webhooks_answering(
        key_vault: KeyVaultDouble, tls: Tls, storage_env: dict[str, str],
        twilio_double: TwilioDouble, caplog: Any) -> None:
    """Issue 19, point 9: an access policy granting `get` but not `list` (what many guides
    give) answered 403 to the rotation window's look-up, and every webhook answered 503
    for a day after each token change."""
    key_vault.secrets["twilio-auth-token"] = ROTATED  # a new version, written just now
    key_vault.list_status = 403
    rt = vault_runtime(key_vault, tls, storage_env, twilio_double.url)

    async def go() -> list[int]:
        try:
            hooks = [await rt.webhooks.handle("sms", signed_sms_webhook(ROTATED))
                     for _ in range(3)]
            # The old token is not accepted: its version could not be found.
            old = await rt.webhooks.handle("sms", signed_sms_webhook(AUTH_TOKEN))
            return [h.status for h in [*hooks, old]]
        finally:
            await rt.close()

    assert asyncio.run(go()) == [200, 200, 200, 403]
    listings = [r for r in key_vault.requests if "/versions" in r.path]
    assert listings and {r.status for r in listings} == {403}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"
                and r.name == "shared.credentials"]
    assert warnings == [
        f"Key Vault {key_vault.url} did not list the versions of secret 'twilio-auth-token' "
        "(HTTP 403): the auth token's previous version is not accepted on webhooks during "
        "the rotation window; the current one serves. Grant the app's identity 'list' on "
        "secrets: the 'Key Vault Secrets User' role (RBAC vault) or 'list' beside 'get' in "
        "the access policy."]
    assert ROTATED not in caplog.text and AUTH_TOKEN not in caplog.text


def test_vault_throttled_then_back_job_is_retried_not_lost(
        key_vault: KeyVaultDouble, tls: Tls, storage_env: dict[str, str],
        twilio_double: TwilioDouble) -> None:
    key_vault.faults = [429] * 10  # more than the SDK's own retries
    rt = vault_runtime(key_vault, tls, storage_env, twilio_double.url)
    rt.credentials.source._client_factory = _fast_retry(key_vault, tls)  # type: ignore

    async def go() -> list[Any]:
        try:
            first = await rt.processor.process(QueueItem("m1", json.dumps(SMS)))
            key_vault.faults.clear()
            queue = await rt.storage.queue(rt.settings.outbound_queue_name)
            # The copy is delayed (invisible), but counted.
            props = await queue.get_queue_properties()
            row = await rt.processor.ledger.get("msg-m1")
            return [first, props.approximate_message_count, row]
        finally:
            await rt.close()

    first, queued, row = asyncio.run(go())
    assert first.result == "retry_scheduled"
    assert "Key Vault" in first.reason and "HTTP 429" in first.reason
    assert twilio_double.creates() == []
    assert queued == 1
    assert row["status"] == "retrying" and "HTTP 429" in row["last_error"]


def _fast_retry(kv: KeyVaultDouble, tls: Tls) -> Any:
    def build() -> Any:
        from azure.identity import DefaultAzureCredential
        from azure.keyvault.secrets import SecretClient

        return SecretClient(kv.url, DefaultAzureCredential(), connection_verify=tls.ca_path,
                            verify_challenge_resource=False, retry_total=2,
                            retry_backoff_factor=0.01, retry_backoff_max=0.05)
    return build


def test_vault_unreachable_job_is_retried_not_lost(
        managed_identity: ManagedIdentityDouble, tls: Tls, storage_env: dict[str, str],
        twilio_double: TwilioDouble) -> None:
    from devhost.services import free_port

    closed = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings.from_env(env(KEY_VAULT_URL=closed, TWILIO_ACCOUNT_SID=None,
                                     TWILIO_AUTH_TOKEN=None, TWILIO_API_BASE_URL=twilio_double.url,
                                     **storage_env))

    def factory() -> Any:
        from azure.identity import DefaultAzureCredential
        from azure.keyvault.secrets import SecretClient

        return SecretClient(closed, DefaultAzureCredential(), connection_verify=tls.ca_path,
                            verify_challenge_resource=False, retry_total=1,
                            retry_backoff_factor=0.01)

    rt = Runtime.build(settings, secret_client_factory=factory)

    async def go() -> Any:
        try:
            return await rt.processor.process(QueueItem("m1", json.dumps(SMS)))
        finally:
            await rt.close()

    outcome = asyncio.run(go())
    assert outcome.result == "retry_scheduled"
    assert outcome.reason.startswith(f"Twilio credentials unavailable: Key Vault {closed} is "
                                     "unreachable")
    assert twilio_double.creates() == []
