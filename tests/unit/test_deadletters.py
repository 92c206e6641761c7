"""Dead letters: whole envelopes that fit a queue message by construction, one log line
each in the form the alert parses, and no account identifier in a reason."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from twilio.base.exceptions import TwilioRestException

from shared import deadletters
from shared.failures import classify
from shared.outbound import OutboundProcessor, QueueItem
from shared.storage import MAX_MESSAGE_BYTES, queue_bytes
from tests.helpers import ACCOUNT_SID, FakeSender, MemoryLedger, MemoryQueues, settings

AT = 1_700_000_000.0


def envelope(original: bytes | str, **extra: Any) -> dict[str, Any]:
    text = deadletters.envelope(kind="invalid_job", reason="bad", original=original,
                                queue_message_id="m1", job_key=None, twilio_code=None,
                                dequeue_count=1, at=AT, **extra)
    assert queue_bytes(text) <= MAX_MESSAGE_BYTES
    return json.loads(text)  # type: ignore[no-any-return]


def test_a_small_original_is_kept_whole() -> None:
    doc = envelope('{"type": "sms"}', attempts=2)
    assert doc == {"envelope_version": 1, "kind": "invalid_job", "reason": "bad",
                   "job_key": None, "twilio_code": None, "queue_message_id": "m1",
                   "dequeue_count": 1, "attempts": 2, "at": "2023-11-14T22:13:20+00:00",
                   "original": '{"type": "sms"}'}


@pytest.mark.parametrize("original", ["<&é" * 22_000, "x" * 64 * 1024, "€" * 21_000])
def test_an_original_too_large_for_the_queue_is_cut_and_identified(original: str) -> None:
    doc = envelope(original)
    raw = original.encode()
    assert doc["original_truncated"] is True
    assert doc["original_bytes"] == len(raw)
    assert doc["original_sha256"] == hashlib.sha256(raw).hexdigest()
    assert original.startswith(doc["original"]) and len(doc["original"]) > 1000


def test_bytes_that_are_not_utf8_are_kept_as_base64() -> None:
    doc = envelope(b"\xff\x00junk")
    assert base64.b64decode(doc["original_base64"]) == b"\xff\x00junk"
    assert deadletters.parse(json.dumps(doc)) == doc
    assert deadletters.parse('{"type": "sms", "to": "+1"}') is None  # the host's poison move
    assert deadletters.parse("not json") is None


def test_a_64_kib_invalid_job_is_rejected_not_raised() -> None:
    """It used to raise (the envelope did not fit), and end in -poison without its reason."""
    queues = MemoryQueues()
    processor = OutboundProcessor(settings(), FakeSender(), MemoryLedger(), queues)
    body = '{"type": "sms", "to": "+15551234567", "body": "' + "<" * (64 * 1024 - 60) + '"}'
    outcome = asyncio.run(processor.process(QueueItem("m1", body)))
    assert outcome.result == "rejected"
    [letter] = [json.loads(t) for t in queues.texts("twilio-outbound-rejected")]
    assert letter["reason"] == "field 'body': must be at most 1600 characters"
    assert letter["original_truncated"] is True


def test_one_log_line_per_dead_letter_in_the_alerts_form(caplog: Any) -> None:
    deadletters.log_dead_letter(kind="twilio_permanent", job_key="order 7", twilio_code=21211,
                                queue="twilio-outbound-rejected",
                                reason="Twilio answered HTTP 400\nforged=line")
    [record] = [r for r in caplog.records if r.name == "shared.deadletters"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "dead_letter kind=twilio_permanent job_key=order_7 twilio_code=21211 "
        "queue=twilio-outbound-rejected reason=Twilio answered HTTP 400 forged=line")


@pytest.mark.parametrize("error", [
    aiohttp.ClientResponseError(SimpleNamespace(  # type: ignore[arg-type]
        real_url=f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"),
        (), status=502, message="Bad Gateway"),
    aiohttp.ClientOSError(104, f"reset talking to /Accounts/{ACCOUNT_SID}/Calls.json"),
    TwilioRestException(500, f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}",
                        f"account {ACCOUNT_SID} is busy", 20500),
])
def test_no_account_sid_in_a_reason(error: Exception) -> None:
    failure = classify(error)
    assert failure is not None
    assert ACCOUNT_SID not in failure.reason and "AC…" in failure.reason
