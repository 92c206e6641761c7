"""Medium: an answer Twilio's client cannot read after a create still leads to a resend, or
to a job recorded `sent` that may not have been.

twilio-python turns a non-2xx answer whose body is not Twilio's JSON (a gateway's HTML
`504 Gateway Time-out`, `502 Bad Gateway`) into `TwilioRestException(status, ...,
code=status)`. `shared.failures.classify` reads every TwilioRestException as an answer from
Twilio, so not ambiguous: the job is retried 10 s later with no look at Twilio. A gateway
504/502 says nothing about whether Twilio's backend created the message: this is the
"answer that cannot be read" of issue 19 point 5, through the other door.

And a 2xx with an empty body (a proxy's 200/204) makes twilio-python return `{}`: the job
is recorded `sent` with no SID and never looked at again.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response

from shared.credentials import CredentialCache, EnvironmentSource
from shared.outbound import OutboundProcessor, QueueItem
from shared.twilio_rest import TwilioApi
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN, MemoryLedger, MemoryQueues, settings

CREATED = Response(201, json.dumps({"sid": "SM" + "b" * 32, "status": "queued",
                                    "body": "hi"}), {})
NOTHING_LISTED = Response(200, json.dumps({"messages": [], "meta": {"next_page_url": None}}),
                          {})
GATEWAY_504 = Response(504, "<html><body><h1>504 Gateway Time-out</h1>The server didn't "
                            "respond in time.</body></html>", {"Content-Type": "text/html"})
GATEWAY_502 = Response(502, "<html><head><title>502 Bad Gateway</title></head></html>",
                       {"Content-Type": "text/html"})


class Http(AsyncTwilioHttpClient):  # type: ignore[misc]
    """Twilio's HTTP seam: the first create gets `first`, later ones are created."""

    def __init__(self, first: Response) -> None:
        super().__init__()
        self.first = first
        self.creates = 0
        self.lists = 0

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if method == "POST":
            self.creates += 1
            return self.first if self.creates == 1 else CREATED
        self.lists += 1
        return NOTHING_LISTED


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def deliver_twice(first: Response) -> tuple[Http, MemoryLedger]:
    async def go() -> tuple[Http, MemoryLedger]:
        http, clock = Http(first), Clock()
        api = TwilioApi(CredentialCache(EnvironmentSource(ACCOUNT_SID, AUTH_TOKEN)),
                        http_client=http)
        ledger, queues = MemoryLedger(clock), MemoryQueues()
        processor = OutboundProcessor(settings(), api, ledger, queues, clock=clock,
                                      spread=round)
        job = json.dumps({"id": "j1", "type": "sms", "to": "+15551234567", "body": "hi"})
        await processor.process(QueueItem("m1", job))
        if queues.messages.get("twilio-outbound"):  # the retry copy, once it is due
            text, delay = queues.messages["twilio-outbound"][-1]
            clock.now += delay
            await processor.process(QueueItem("m2", text))
        await api.close()
        return http, ledger

    return asyncio.run(go())


@pytest.mark.parametrize("answer", [GATEWAY_504, GATEWAY_502], ids=["504", "502"])
def test_a_gateway_page_after_a_create_is_checked_at_twilio_before_a_resend(
        answer: Response) -> None:
    http, ledger = deliver_twice(answer)
    assert http.creates == 1 or http.lists > 0, (
        "created a second time with no look at Twilio after an answer that could not be "
        f"read (row: {ledger.rows['j1']})")


def test_an_empty_2xx_answer_is_not_recorded_as_sent() -> None:
    http, ledger = deliver_twice(Response(200, "", {}))
    row = ledger.rows["j1"]
    assert row["status"] != "sent" or row.get("sid"), f"recorded sent with no SID: {row}"
