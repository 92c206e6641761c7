"""Twimlet side effects on Azurite are keyed on Twilio's SIDs (issue 19, point 10): a
signed voicemail request replayed with fresh I-Twilio-Idempotency-Tokens, which Twilio does
not sign, adds no webhook-effect rows and queues its notification once."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

from shared.ledger import effect_partition
from shared.runtime import Runtime
from shared.settings import Settings
from shared.webhooks import WebhookRequest
from tests.helpers import ACCOUNT_SID, env, sign

ORIGIN = "https://func-x.azurewebsites.net"
URL = f"{ORIGIN}/api/twiml/voicemail?Notify=%2B15559990000&Transcribe=false&Recorded=true"
RECORDING_SID = "RE" + "4" * 32
FORM = {"CallSid": "CA" + "4" * 32, "AccountSid": ACCOUNT_SID, "From": "+15551112222",
        "To": "+15005550006", "RecordingSid": RECORDING_SID, "RecordingDuration": "7",
        "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/"
                        f"{RECORDING_SID}"}


def request(token: str | None) -> WebhookRequest:
    headers = {"content-type": "application/x-www-form-urlencoded",
               "x-twilio-signature": sign(URL, FORM)}
    if token:
        headers["i-twilio-idempotency-token"] = token
    return WebhookRequest("POST", URL, headers, urlencode(FORM).encode())


def test_a_replayed_voicemail_request_adds_no_rows_and_queues_nothing_twice(
        storage_env: dict[str, str]) -> None:
    rt = Runtime.build(Settings.from_env(env(WEBHOOK_BASE_URL=ORIGIN, **storage_env)))

    async def go() -> tuple[list[int], list[Any], list[str]]:
        try:
            statuses = [(await rt.webhooks.handle("twiml/voicemail", request(token))).status
                        for token in ("twilio-1", "replay-1", "replay-2", None, "replay-3")]
            table = rt.storage.table(rt.settings.jobs_table_name)
            rows = [row async for row in table.list_entities()
                    if row["PartitionKey"] == effect_partition(row["RowKey"])]
            queue = await rt.storage.queue(rt.settings.outbound_queue_name)
            texts = [m.content for m in await queue.peek_messages(max_messages=32)]
            return statuses, rows, texts
        finally:
            await rt.close()

    statuses, rows, texts = asyncio.run(go())
    assert statuses == [200] * 5
    assert len(rows) == 1
    assert [json.loads(t)["id"] for t in texts] == [f"voicemail-{RECORDING_SID}"]


def test_twilios_largest_webhook_is_answered_and_its_event_queued_whole(
        storage_env: dict[str, str]) -> None:
    """Issue 19, point 7: the body cap (64 KiB) fits the largest webhook Twilio sends, and
    its event fits a queue message on Azurite."""
    from tests.unit.test_webhook_guards import LARGEST

    url = f"{ORIGIN}/api/sms"
    rt = Runtime.build(Settings.from_env(env(WEBHOOK_BASE_URL=ORIGIN, **storage_env)))
    body = urlencode(LARGEST).encode()
    request = WebhookRequest("POST", url, {"content-type": "application/x-www-form-urlencoded",
                                           "x-twilio-signature": sign(url, LARGEST)}, body)

    async def go() -> tuple[int, list[str]]:
        try:
            status = (await rt.webhooks.handle("sms", request)).status
            queue = await rt.storage.queue(rt.settings.inbound_queue_name)
            return status, [m.content for m in await queue.peek_messages(max_messages=32)]
        finally:
            await rt.close()

    status, texts = asyncio.run(go())
    assert (status, len(body)) == (200, 42_703)
    [event] = [json.loads(t) for t in texts]
    assert (event["body"], len(event["media"]), "truncated" in event) == (
        LARGEST["Body"], 10, False)
