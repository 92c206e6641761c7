"""With known secret values, run the webhook and queue scenarios (good, bad, refused,
rotated-token 401s, vault reads) and find the auth token nowhere: not in a log record, a
response body, or a dead-letter message."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from shared.outbound import QueueItem
from shared.runtime import Runtime
from shared.settings import Settings
from shared.webhooks import WebhookRequest
from tests.doubles import KeyVaultDouble, Reply, Tls, TwilioDouble
from tests.helpers import AUTH_TOKEN, env, form_body, sign
from tests.integration.conftest import secret_client_factory

SMS = {"type": "sms", "to": "+15551234567", "body": "hi"}


async def scenarios(rt: Runtime) -> list[str]:
    seen: list[str] = []
    url = "http://127.0.0.1:7071/api/sms"
    form = {"MessageSid": "SM" + "2" * 32, "From": "+15551234567", "To": "+15005550006",
            "Body": "hi"}
    for sig in (sign(url, form), "forged", None):
        headers = {"content-type": "application/x-www-form-urlencoded"}
        if sig:
            headers["x-twilio-signature"] = sig
        res = await rt.webhooks.handle("sms", WebhookRequest("POST", url, headers,
                                                             form_body(form)))
        seen.append(res.body)
    bodies = [json.dumps(SMS), json.dumps({**SMS, "to": "+15550000001"}),
              json.dumps({**SMS, "to": "+15550000002"}), '{"bad": true}', "junk"]
    for i, body in enumerate(bodies):
        outcome = await rt.processor.process(QueueItem(f"m{i}", body))
        seen.append(repr(outcome))
    for name in (rt.settings.rejected_queue_name, rt.settings.outbound_queue_name):
        queue = await rt.storage.queue(name)
        seen += [m.content for m in await queue.peek_messages(max_messages=32)]
    return seen


@pytest.mark.parametrize("source", ["environment", "key_vault"])
def test_auth_token_appears_nowhere(source: str, request: Any, caplog: Any,
                                    storage_env: dict[str, str],
                                    twilio_double: TwilioDouble, tls: Tls) -> None:
    twilio_double.auth_token = AUTH_TOKEN
    twilio_double.by_to = {"+15550000001": [Reply(400, {"code": 21211, "message": "bad To",
                                                        "status": 400})],
                           "+15550000002": [Reply(401, {"code": 20003, "message": "Auth",
                                                        "status": 401})] * 3}
    overrides: dict[str, Any] = {"TWILIO_API_BASE_URL": twilio_double.url, **storage_env}
    factory = None
    if source == "key_vault":
        kv: KeyVaultDouble = request.getfixturevalue("key_vault")
        overrides.update(KEY_VAULT_URL=kv.url, TWILIO_ACCOUNT_SID=None, TWILIO_AUTH_TOKEN=None)
        factory = secret_client_factory(kv.url, tls.ca_path)
    rt = Runtime.build(Settings.from_env(env(**overrides)), secret_client_factory=factory)
    rt.credentials._min_refresh = 0
    # Turn the SDKs' request logging all the way up: even then, no secret.
    for name in ("shared.twilio_http", "azure", "azure.core.pipeline.policies.http_logging_policy"):
        logging.getLogger(name).setLevel(logging.DEBUG)

    async def go() -> list[str]:
        try:
            return await scenarios(rt)
        finally:
            await rt.close()

    try:
        outputs = asyncio.run(go())
    finally:
        for name in ("shared.twilio_http", "azure.core.pipeline.policies.http_logging_policy"):
            logging.getLogger(name).setLevel(logging.WARNING)
    assert any("rejected" in o for o in outputs) and any("sent" in o for o in outputs)
    assert len(caplog.records) > 10
    leaks = [o for o in outputs if AUTH_TOKEN in o]
    leaks += [r.getMessage() for r in caplog.records if AUTH_TOKEN in r.getMessage()]
    leaks += [str(r.args) for r in caplog.records if AUTH_TOKEN in str(r.args)]
    leaks += [r.exc_text for r in caplog.records if r.exc_text and AUTH_TOKEN in r.exc_text]
    assert AUTH_TOKEN not in caplog.text
    assert leaks == []
